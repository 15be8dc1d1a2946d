"""The accumulator and the mapper as managed nodes, driven through their
lifecycle services (``lifecycle_msgs/srv/ChangeState`` and ``GetState``) from
another node, in this process or across processes: configure, activate,
deactivate and cleanup do what the README says; a configure that cannot work
reports FAILURE, leaves the node unconfigured and the files untouched;
``autostart:=false`` leaves a node unconfigured, and with autostart a failed
configure ends the process with the reason."""

from __future__ import annotations

import contextlib
import sys
import time
import types

import pytest
from conftest import REPO_ROOT
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from test_accumulator_node import H, S, W, _header, _transform, color_image, depth_image
from tf2_msgs.msg import TFMessage

from stseg_ros.msg import RevisitScan
from stseg_ros.ros.demo import log_tail, start_node, stop_process
from stseg_ros.ros.qos import REVISIT_QOS
from stseg_ros.ros.replay import SpinThread
from stseg_ros.srv import BeginRevisit, EndRevisit


def _wait(future, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, "no answer"
        time.sleep(0.02)
    return future.result()


def _until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class Manager:
    """What a lifecycle manager does to one node: ask its state, change it."""

    def __init__(self, node, target: str) -> None:
        self._change = node.create_client(ChangeState, f"/{target}/change_state")
        self._get = node.create_client(GetState, f"/{target}/get_state")
        for client in (self._change, self._get):
            assert client.wait_for_service(timeout_sec=60.0), f"{target} has no {client.srv_name}"

    def state(self) -> str:
        # asked again: a request sent while discovery still shows a node of the
        # same name that is gone (an earlier test's) is never answered
        deadline = time.monotonic() + 60.0
        while True:
            future = self._get.call_async(GetState.Request())
            try:
                return _wait(future, timeout=3.0).current_state.label
            except AssertionError:
                self._get.remove_pending_request(future)
                assert time.monotonic() < deadline, "get_state never answered"

    def change(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return _wait(self._change.call_async(request), timeout=60.0).success


def _overrides(**params) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in params.items()]


class Feeder:
    """Publishes camera images and poses to the accumulator, calls its services."""

    def __init__(self, node) -> None:
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.color = node.create_publisher(Image, "camera/color/image_raw", reliable)
        self.depth = node.create_publisher(Image, "camera/depth/image_raw", reliable)
        self.info = node.create_publisher(CameraInfo, "camera/color/camera_info", reliable)
        self.tf = node.create_publisher(TFMessage, "/tf", reliable)
        self.tf_static = node.create_publisher(TFMessage, "/tf_static", latched)
        self.begin = node.create_client(BeginRevisit, "/accumulator/begin_revisit")
        self.end = node.create_client(EndRevisit, "/accumulator/end_revisit")
        self.tf_static.publish(TFMessage(transforms=[_transform("base_link", "cam", 0, 0.1, 1.0)]))
        self.t = 10 * S

    def subscribed(self) -> bool:
        return min(p.get_subscription_count() for p in (self.color, self.depth, self.tf)) > 0

    def frames(self, n: int) -> None:
        k = [50.0, 0, (W - 1) / 2, 0, 50.0, (H - 1) / 2, 0, 0, 1]
        self.info.publish(CameraInfo(width=W, height=H, k=k, header=_header("cam")))
        time.sleep(0.2)
        for _ in range(n):
            self.t += S // 5
            for dt in (-S // 20, S // 20):
                self.tf.publish(TFMessage(transforms=[_transform("odom", "base_link",
                                                                 self.t + dt, 0.0)]))
            self.color.publish(color_image(self.t))
            self.depth.publish(depth_image(self.t))


@pytest.fixture
def managed_accumulator(rclpy_context):
    from stseg_ros.ros.accumulator_node import AccumulatorNode

    node = AccumulatorNode(parameter_overrides=_overrides(
        autostart=False, max_fusion_rate_hz=0.0, idle_timeout_s=1.0, status_period_s=0.0))
    peer = rclpy_context.create_node("lifecycle_manager")
    spin = SpinThread(node, peer)
    yield node, peer
    spin.stop()
    node.destroy_node()
    peer.destroy_node()


def _fused(node) -> int:
    status = node.accumulator.status()
    return status[1] if status else -1


def test_accumulator_configure_activate_deactivate_cleanup(managed_accumulator):
    node, peer = managed_accumulator
    manager, feeder = Manager(peer, "accumulator"), Feeder(peer)
    assert manager.state() == "unconfigured"
    assert node.accumulator is None                       # no worker before configure
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == "inactive"
    time.sleep(0.5)
    assert not feeder.subscribed() and not feeder.begin.service_is_ready()

    assert manager.change(Transition.TRANSITION_ACTIVATE)
    assert manager.state() == "active"
    _until(feeder.subscribed, "the active accumulator never subscribed")
    assert feeder.begin.wait_for_service(timeout_sec=10.0)
    assert _wait(feeder.begin.call_async(BeginRevisit.Request(label="paused"))).success
    feeder.frames(3)
    _until(lambda: _fused(node) == 3, "frames not fused while active")

    assert manager.change(Transition.TRANSITION_DEACTIVATE)
    assert manager.state() == "inactive"
    _until(lambda: not feeder.subscribed(), "the inactive accumulator still subscribes")
    _until(lambda: not feeder.begin.service_is_ready(), "services outlive deactivation")
    feeder.frames(2)
    time.sleep(1.5)                                       # longer than idle_timeout_s
    assert _fused(node) == 3                              # not processed, revisit still open

    assert manager.change(Transition.TRANSITION_ACTIVATE)  # the same revisit carries on
    _until(feeder.subscribed, "not subscribed again")
    assert feeder.end.wait_for_service(timeout_sec=10.0)
    feeder.frames(2)
    _until(lambda: _fused(node) == 5, "frames not fused after activating again")
    answer = _wait(feeder.end.call_async(EndRevisit.Request()))
    assert (answer.success, answer.revisit, answer.frames_fused) == (True, 0, 5), answer.message

    assert manager.change(Transition.TRANSITION_DEACTIVATE)
    assert manager.change(Transition.TRANSITION_CLEANUP)
    assert manager.state() == "unconfigured"
    assert node.accumulator is None
    assert not list(node.subscriptions) and not list(node.timers)


def test_deactivating_during_end_revisit_answers_it_then_drops_the_services(
        managed_accumulator):
    node, peer = managed_accumulator
    manager, feeder = Manager(peer, "accumulator"), Feeder(peer)
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.change(Transition.TRANSITION_ACTIVATE)
    _until(feeder.subscribed, "the active accumulator never subscribed")
    assert feeder.end.wait_for_service(timeout_sec=10.0)
    assert _wait(feeder.begin.call_async(BeginRevisit.Request(label="cut"))).success
    feeder.frames(2)
    _until(lambda: _fused(node) == 2, "frames not fused")
    # waits for images that never come, up to 3 s
    ending = feeder.end.call_async(EndRevisit.Request(color_sent=4, depth_sent=4,
                                                      arrival_timeout_s=3.0))
    # the node must hold the call before it is deactivated (on a loaded machine
    # the request can take longer than any fixed sleep to arrive)
    _until(lambda: node._ends_in_flight == 1, "end_revisit never reached the node")  # noqa: SLF001
    assert not ending.done()
    assert manager.change(Transition.TRANSITION_DEACTIVATE)
    assert feeder.end.service_is_ready()          # kept for the call in flight
    answer = _wait(ending)
    assert (answer.success, answer.frames_fused, answer.images_missing) == (True, 2, 4)
    _until(lambda: not feeder.end.service_is_ready(), "services kept after the answer")
    assert manager.state() == "inactive"
    assert manager.change(Transition.TRANSITION_ACTIVATE)    # and back, with fresh services
    assert feeder.begin.wait_for_service(timeout_sec=10.0)
    assert _wait(feeder.begin.call_async(BeginRevisit.Request(label="next"))).revisit == 1


def test_accumulator_bad_parameter_fails_configure_and_can_be_fixed(managed_accumulator):
    node, peer = managed_accumulator
    manager = Manager(peer, "accumulator")
    node.set_parameters(_overrides(pose_source="gps"))
    assert not manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == "unconfigured"
    assert "pose_source: 'gps' is not one of: tf, odometry" in node.transition_error
    assert node.accumulator is None
    assert all(p.topic_name != "/revisits" for p in node.publishers)   # nothing left behind
    node.set_parameters(_overrides(pose_source="odometry"))
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == "inactive"


def _empty_revisit(label: str) -> RevisitScan:
    return RevisitScan(label=label)


def test_mapper_takes_revisits_only_while_active(tmp_path, rclpy_context):
    from stseg_ros.ros.mapper_node import MapperNode

    db = tmp_path / "memory.db"
    node = MapperNode(parameter_overrides=_overrides(
        autostart=False, db_path=str(db), **{"segmentation.segmenter": "geometric"}))
    peer = rclpy_context.create_node("lifecycle_manager")
    spin = SpinThread(node, peer)
    try:
        manager = Manager(peer, "mapper")
        assert manager.state() == "unconfigured" and not db.exists()
        assert manager.change(Transition.TRANSITION_CONFIGURE)
        assert db.exists() and manager.state() == "inactive"
        pub = peer.create_publisher(RevisitScan, "revisits", REVISIT_QOS)
        assert manager.change(Transition.TRANSITION_ACTIVATE)
        _until(lambda: pub.get_subscription_count() > 0, "the active mapper never subscribed")
        pub.publish(_empty_revisit("while active"))
        _until(lambda: node.taken == 1, "revisit not taken while active")
        assert manager.change(Transition.TRANSITION_DEACTIVATE)
        _until(lambda: pub.get_subscription_count() == 0, "the inactive mapper still subscribes")
        pub.publish(_empty_revisit("while inactive"))
        time.sleep(1.0)
        assert node.taken == 1
        assert manager.change(Transition.TRANSITION_ACTIVATE)
        # the latched topic offers what was published meanwhile (and the one before)
        _until(lambda: node.taken >= 2, "revisit published while inactive not taken later")
        assert manager.change(Transition.TRANSITION_DEACTIVATE)
        assert manager.change(Transition.TRANSITION_CLEANUP)
        assert manager.state() == "unconfigured"
        assert node._worker is None and node.memory is None
    finally:
        spin.stop()
        node.destroy_node()
        peer.destroy_node()


def test_mapper_with_missing_weights_fails_configure_and_creates_nothing(tmp_path,
                                                                         rclpy_context):
    from stseg_ros.ros.mapper_node import MapperNode

    db = tmp_path / "new" / "memory.db"
    node = MapperNode(parameter_overrides=_overrides(
        autostart=False, db_path=str(db), **{"segmentation.segmenter": "learned",
                                             "segmentation.weights": str(tmp_path / "missing.pt")}))
    peer = rclpy_context.create_node("lifecycle_manager")
    spin = SpinThread(node, peer)
    try:
        manager = Manager(peer, "mapper")
        assert not manager.change(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == "unconfigured"
        assert "missing.pt" in node.transition_error
        assert not db.parent.exists()
        assert all("instances" not in p.topic_name for p in node.publishers)
    finally:
        spin.stop()
        node.destroy_node()
        peer.destroy_node()


def test_mapper_with_an_unusable_label_set_fails_configure_naming_it(tmp_path, rclpy_context):
    from rclpy.lifecycle import TransitionCallbackReturn

    from stseg_ros.ros.mapper_node import MapperNode

    labels = tmp_path / "labels.yaml"
    labels.write_text("format: stseg_ros.label_set\nclasses: {3: {name: mug, nyu40: cup}}\n")
    db = tmp_path / "new" / "memory.db"
    node = MapperNode(parameter_overrides=_overrides(
        autostart=False, db_path=str(db), **{"segmentation.segmenter": "geometric",
                                             "labels.label_set": str(labels)}))
    try:
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert str(labels) in node.transition_error and "'cup'" in node.transition_error
        assert not db.parent.exists()
    finally:
        node.destroy_node()


@contextlib.contextmanager
def _node_process(executable: str, log, *params: str):
    """A node executable as a child process writing to ``log``. A failure
    inside carries how the process ended and the end of its log: a node that
    never came up says why. The process is stopped on the way out."""
    proc = start_node(executable, *[arg for p in params for arg in ("-p", p)], log=log)
    try:
        yield proc
    except Exception as failure:
        code = stop_process(proc)
        raise AssertionError(f"{failure}\n{executable} process ended with {code}; "
                             f"its log ends:\n{log_tail(log, 150)}") from None
    finally:
        stop_process(proc)


def test_a_mapper_process_without_autostart_stays_unconfigured_and_refuses_a_foreign_db(
        tmp_path, rclpy_context):
    foreign, log = tmp_path / "notes.db", tmp_path / "mapper.log"
    foreign.write_bytes(b"not a memory" * 100)
    before = foreign.read_bytes()
    with _node_process("mapper", log, "autostart:=false", f"db_path:={foreign}",
                       "segmentation.segmenter:=geometric") as proc:
        peer = rclpy_context.create_node("lifecycle_manager")
        spin = SpinThread(peer)
        try:
            manager = Manager(peer, "mapper")
            assert manager.state() == "unconfigured"
            assert not manager.change(Transition.TRANSITION_CONFIGURE)
            assert manager.state() == "unconfigured"
            assert proc.poll() is None                        # reported, not exited
            assert foreign.read_bytes() == before
        finally:
            spin.stop()
            peer.destroy_node()
        assert stop_process(proc) == 0, "stopped with an error"
    out = log.read_text()
    assert "configure failed" in out and str(foreign) in out and "Traceback" not in out


@pytest.mark.parametrize("after_s", [0.2, 0.8, 1.5])
def test_a_stop_while_the_process_imports_ends_it_cleanly(tmp_path, after_s):
    """Ctrl-C while the node process still imports rclpy, PyTorch and Open3D
    (seconds on a busy machine; the three delays land in different imports, or
    after them where the node itself starts): exit code 0 and no traceback, as
    for a stop after the start. It printed the interrupted import and exited
    with 1 or by the signal."""
    log = tmp_path / "mapper.log"
    with _node_process("mapper", log, f"db_path:={tmp_path / 'memory.db'}",
                       "segmentation.segmenter:=geometric") as proc:
        time.sleep(after_s)
        assert stop_process(proc) == 0, "stopped with an error"
    out = log.read_text()
    assert "Traceback" not in out and "Error" not in out, out


def test_a_stop_while_a_node_configures_ends_the_process_cleanly():
    """Ctrl-C (or launch stopping the process) that arrives while an
    autostarting node configures leaves the transition unfinished: the process
    ends with code 0 and what configure made is released, not with a failed
    start (a busy machine makes this window wide)."""
    import rclpy
    from std_msgs.msg import String

    from stseg_ros.ros.executor import spin_nodes
    from stseg_ros.ros.lifecycle import ManagedNode

    released = []

    class Interrupted(ManagedNode):
        def configure(self) -> None:
            self.create_publisher(String, "configured", 1)
            rclpy.shutdown()                  # what the SIGINT handler does

        def release(self) -> None:
            released.append(True)
            super().release()

    def make():
        node = Interrupted("interrupted_while_configuring")
        node.start()
        return node

    try:
        assert spin_nodes(make) == 0
        assert released
    finally:
        rclpy.try_shutdown()


@pytest.mark.parametrize("stopped, code", [(True, 0), (False, 1)])
def test_a_stop_as_the_executor_starts_is_a_clean_exit_but_a_failed_node_is_not(
        monkeypatch, capsys, stopped, code):
    """Ctrl-C landing between the last node's start and the executor's first
    wait makes rclpy raise (its wait set finds the context shut down): the
    process still ends with 0 (at a test's teardown on a loaded machine it
    ended with 1). A node whose worker died still ends it with 1 and the
    reason."""
    import rclpy

    import stseg_ros.ros.executor as executor
    from stseg_ros.ros.lifecycle import ManagedNode

    class Starting(executor.SingleThreadedExecutor):
        def spin(self) -> None:
            if stopped:
                rclpy.shutdown()                    # what the SIGINT handler does
                raise RuntimeError("failed to initialize wait set: the given context "
                                   "is not valid")
            raise executor.NodeFailedError("the worker died: disk full")

    monkeypatch.setattr(executor, "SingleThreadedExecutor", Starting)
    try:
        assert executor.spin_nodes(lambda: ManagedNode("starting_node")) == code
        assert ("disk full" in capsys.readouterr().err) == (not stopped)
    finally:
        rclpy.try_shutdown()


def test_with_autostart_a_failed_configure_ends_the_process_with_the_reason(tmp_path):
    db, log = tmp_path / "new" / "memory.db", tmp_path / "mapper.log"
    with _node_process("mapper", log, f"db_path:={db}", "segmentation.segmenter:=learned",
                       f"segmentation.weights:={tmp_path / 'missing.pt'}") as proc:
        assert proc.wait(timeout=120) == 1, "did not end with 1"
    out = log.read_text()
    assert "missing.pt" in out.splitlines()[-1] and "Traceback" not in out
    assert not db.parent.exists()


class _Action:
    """Stands in for a launch / launch_ros action: keeps what it was given."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _Configuration:
    """launch.substitutions.LaunchConfiguration over a plain dict of values."""

    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context) -> str:
        return context[self.name]


def _load_launch_file(monkeypatch):
    """The launch file as a module, over stand-ins for launch, launch_ros and
    ament_index_python (the pip venv has none of them)."""
    import importlib.util
    import types

    stand_ins = {
        "launch": {"LaunchDescription": _Action},
        "launch.actions": {"DeclareLaunchArgument": _Action, "OpaqueFunction": _Action,
                           "RegisterEventHandler": _Action, "Shutdown": _Action},
        "launch.event_handlers": {"OnProcessExit": _Action},
        "launch.conditions": {"IfCondition": _Action, "UnlessCondition": _Action},
        "launch.substitutions": {"LaunchConfiguration": _Configuration},
        "launch_ros": {}, "launch_ros.actions": {"LifecycleNode": _Action, "Node": _Action},
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda p: "/share/" + p},
    }
    for name, attrs in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("mapping_launch",
                                                  REPO_ROOT / "launch" / "mapping.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_arguments_come_from_the_settings_tree_and_override_only_when_given(
        monkeypatch):
    from stseg_ros.ros.settings import LAUNCH_ARGUMENTS, launch_argument_description

    launch = _load_launch_file(monkeypatch)
    description, = launch.generate_launch_description().args
    arguments = {a.args[0]: a.kwargs for a in description if a.args}
    assert {"namespace", "use_sim_time", "rviz", "composed", "params_file", "autostart",
            *LAUNCH_ARGUMENTS} == set(arguments)
    for name in LAUNCH_ARGUMENTS:
        assert arguments[name] == {"default_value": "",
                                   "description": launch_argument_description(name)}
    assert "SQLite object memory" in arguments["db_path"]["description"]
    opaque, = (a for a in description if not a.args)
    values = {name: "" for name in arguments}
    values.update(params_file="/share/stseg_ros/config/mapping.yaml", autostart="true",
                  use_sim_time="false", device="cuda", db_path="/data/memory.db",
                  pose_source="odometry")
    launched = opaque.kwargs["function"](values)
    actions = {a.kwargs.get("name", a.kwargs["executable"]): a
               for a in launched if "executable" in a.kwargs}

    def given(executable) -> list:
        return [p for p in actions[executable].kwargs["parameters"] if isinstance(p, dict)]

    autostart = {"use_sim_time", "autostart"}
    assert [set(p) for p in given("accumulator")] == [autostart, {"pose_source"}]
    assert given("mapper")[1] == {"db_path": "/data/memory.db", "segmentation.device": "cuda"}
    assert given("mapping")[1] == {"db_path": "/data/memory.db", "segmentation.device": "cuda",
                                   "pose_source": "odometry"}
    assert all(p["autostart"].name == "autostart" for n in ("accumulator", "mapper", "mapping")
               for p in given(n)[:1])
    # a node that exits with an error (a failed configure with autostart) ends the launch
    handler, = (a for a in launched if "executable" not in a.kwargs)
    on_exit = handler.args[0].kwargs["on_exit"]
    node = types.SimpleNamespace(name="mapper")
    shutdown, = on_exit(types.SimpleNamespace(returncode=1, action=node), None)
    assert "mapper exited with code 1" in shutdown.kwargs["reason"]
    assert on_exit(types.SimpleNamespace(returncode=0, action=node), None) is None
    values.update(device="", db_path="", pose_source="")      # nothing given: params_file's
    actions = {a.kwargs.get("name", a.kwargs["executable"]): a
               for a in opaque.kwargs["function"](values) if "executable" in a.kwargs}
    assert [set(p) for p in given("mapper")] == [autostart]
    values.update(device="gpu")
    with pytest.raises(ValueError, match="device: 'gpu' is not one of: cpu, cuda"):
        opaque.kwargs["function"](values)
