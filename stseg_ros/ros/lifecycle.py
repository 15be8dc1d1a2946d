"""Managed (lifecycle) nodes: the accumulator and the mapper follow the ROS 2
node lifecycle (unconfigured -> inactive -> active, and back).

``ManagedNode`` is their common base:

* parameters are declared when the node is created and read by
  ``on_configure``, which builds everything the node needs (``configure``).
  Anything that goes wrong there (a bad parameter, a foreign database, missing
  weights) is logged with the reason and reported as the transition's FAILURE:
  the node stays unconfigured, nothing it created stays behind.
* ``on_activate`` starts the node's inputs (``activate``), ``on_deactivate``
  stops them again (``deactivate``): entities created by ``activate`` are
  destroyed. ``on_cleanup`` undoes ``configure`` (``release``): entities it
  created are destroyed and its workers stopped. ``on_shutdown`` does whatever
  of both the state it leaves needs; ``destroy_node`` goes through it.
* with the ROS parameter ``autostart`` (default true) the node configures and
  activates itself when created, so a process that starts it works at once,
  as an unmanaged node did; a failed transition then raises
  ``TransitionFailedError`` with the reason (``spin_nodes`` prints it and exits
  with code 1), unless rclpy was shut down meanwhile (Ctrl-C during start-up:
  a clean exit). ``autostart:=false`` leaves it unconfigured for a lifecycle
  manager (``ros2 lifecycle set``, nav2's lifecycle_manager).
"""

from __future__ import annotations

from collections.abc import Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

AUTOSTART = ("Configure and activate the node as soon as it starts (false: stay "
             "unconfigured until a lifecycle manager moves it)")

# the longest a node's cleanup (and so its stop) waits for its worker to finish
# the job in hand, such as a revisit being mapped
RELEASE_WAIT_S = 60.0

# what a node owns, and how it is destroyed
_KINDS = (("subscriptions", "destroy_subscription"), ("services", "destroy_service"),
          ("timers", "destroy_timer"), ("guards", "destroy_guard_condition"),
          ("publishers", "destroy_publisher"))


class TransitionFailedError(RuntimeError):
    """A node started with ``autostart`` could not configure or activate."""


class ManagedNode(LifecycleNode):
    """Base of the package's managed nodes; subclasses implement ``declare``,
    ``configure``, ``activate`` and, where they own more than ROS entities
    (threads, files), ``release`` and ``deactivate``, calling these."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.autostart = True
        self.transition_error: str | None = None    # why the last transition failed
        self._configured: list = []                 # entities configure created
        self._activated: list = []                  # entities activate created
        try:
            self.autostart = bool(self.declare_parameter(
                "autostart", True, ParameterDescriptor(description=AUTOSTART)).value)
            self.declare()
            self._declare_error: str | None = None
        except Exception as err:                    # noqa: BLE001 - reported by on_configure
            self._declare_error = f"{self.get_name()}: bad parameter: {err}"

    # --- for subclasses -----------------------------------------------------------------

    def declare(self) -> None:
        """Declare the node's parameters (may be called again: skip declared ones)."""

    def configure(self) -> None:
        """Read the parameters and build the node; raise with the reason if it cannot."""

    def activate(self) -> None:
        """Start subscriptions, services and timers."""

    def deactivate(self) -> None:
        """Stop what ``activate`` started."""
        self._destroy(self._activated)
        self._activated = []

    def release(self) -> None:
        """Undo ``configure`` (also after it failed half way)."""
        self._destroy(self._configured)
        self._configured = []

    @property
    def state(self) -> str:
        """The lifecycle state's label: unconfigured, inactive, active, finalized."""
        return self._state_machine.current_state[1]

    def start(self) -> None:
        """With ``autostart``: configure and activate now; raise
        ``TransitionFailedError`` with the reason if either fails."""
        if not self.autostart:
            self.get_logger().info("unconfigured; waiting for a lifecycle manager "
                                   "(autostart is false)")
            return
        for step in (self.trigger_configure, self.trigger_activate):
            if step() != TransitionCallbackReturn.SUCCESS:
                if not self.context.ok():
                    # Ctrl-C (or launch stopping the process) while the node
                    # configured: the transition could not be completed, and
                    # the process is to end anyway, which is not a failure
                    return
                raise TransitionFailedError(self.transition_error or
                                            f"{self.get_name()}: {step.__name__} failed")

    # --- lifecycle callbacks ------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.transition_error = None
        if self._declare_error is None:
            try:
                self.declare()                  # parameters added after a failed declare
            except Exception as err:            # noqa: BLE001 - reported below
                self._declare_error = f"{self.get_name()}: bad parameter: {err}"
        if self._declare_error is not None:
            return self._failed("configure", self._declare_error, self.release)
        return self._run("configure", self.configure, self._configured, self.release)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        return self._run("activate", self.activate, self._activated, self.deactivate)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.deactivate()
        self.get_logger().info("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        self.get_logger().info("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_from(state.label)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}; cleaning up")
        self._stop_from("active")
        return TransitionCallbackReturn.SUCCESS     # back to unconfigured

    def destroy_node(self) -> None:
        """Shut down through the lifecycle (stopping workers), then destroy."""
        label, done = self.state, False
        if label != "finalized" and self.context.ok():
            try:
                done = self.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
            except Exception:                   # noqa: BLE001 - stopped directly below
                pass
        # rclpy already shut down (Ctrl-C): no transition could be published. A
        # shutdown transition cut short that way may still have run on_shutdown
        # (the state says finalized): then there is nothing left to stop.
        if not done and self.state != "finalized":
            self._stop_from(label)
        super().destroy_node()

    # --- helpers ------------------------------------------------------------------------

    def _stop_from(self, label: str) -> None:
        if label == "active":
            self.deactivate()
        if label in ("active", "inactive"):
            self.release()

    def _run(self, name: str, step: Callable[[], None], owned: list,
             undo: Callable[[], None]) -> TransitionCallbackReturn:
        before = {id(e) for _, e in self._entities()}
        try:
            step()
        except Exception as err:                # noqa: BLE001 - reported as the result
            owned.extend(e for e in self._entities() if id(e[1]) not in before)
            return self._failed(name, str(err), undo)
        owned.extend(e for e in self._entities() if id(e[1]) not in before)
        self.get_logger().info("active" if name == "activate" else "inactive (configured)")
        return TransitionCallbackReturn.SUCCESS

    def _failed(self, name: str, reason: str, undo: Callable[[], None]) -> TransitionCallbackReturn:
        self.transition_error = reason
        self.get_logger().error(f"{name} failed: {reason}")
        try:
            undo()
        except Exception as err:                # noqa: BLE001 - the first reason counts
            self.get_logger().warning(f"while undoing the failed {name}: {err}")
        return TransitionCallbackReturn.FAILURE

    def _entities(self) -> list:
        return [(kind, e) for kind, _ in _KINDS for e in list(getattr(self, kind))]

    def _destroy(self, entities: list) -> None:
        destroy = dict(_KINDS)
        for kind, entity in reversed(entities):
            getattr(self, destroy[kind])(entity)
