"""``stseg`` verbs of the live ROS graph: the demo, replay, and the map
node's topics and queries."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from stseg_ros.cli.common import UsageError, fail, file_out, folder_out


def _cmd_demo(args: argparse.Namespace) -> int:
    from stseg_ros.ros.demo import run_demo

    return run_demo(folder_out(args.out), args.rate, args.timeout)


def _cmd_serve(args: argparse.Namespace) -> int:
    from stseg_ros.ros.map_server import main, ros_arguments

    return main(["stseg", *ros_arguments(args.epoch_period, args.snapshot, args.loop)])


def _cmd_replay(args: argparse.Namespace) -> int:
    from stseg_ros.ros.env import localhost_ros_env
    from stseg_ros.ros.replay import find_bags, replay
    from stseg_ros.sources.rosbag import replayable

    os.environ.update(localhost_ros_env())
    with tempfile.TemporaryDirectory(prefix="stseg_salvaged_") as spare:
        if args.record is not None:
            file_out(args.record, "--record")
        bags = [replayable(bag, Path(spare)) for bag in find_bags(args.bags)]
        try:
            replay(bags, args.rate, not args.no_revisits, args.accumulator, args.mapper,
                   args.namespace, not args.no_clock, args.record, args.wait)
        except (TimeoutError, ValueError) as err:
            return fail(args, err, 1)
    return 0


def _object_state(text: str) -> int:
    """``--state`` by name (present, removed, unobserved; any case) or number,
    as the query service takes it (ObjectInstance.STATE_*)."""
    from stseg_ros.core.records import ObjectState

    try:
        return int(ObjectState[text.strip().upper()])
    except KeyError:
        pass
    try:
        return int(ObjectState(int(text)))
    except ValueError:
        names = ", ".join(f"{s.name.lower()} ({s.value})" for s in ObjectState)
        raise argparse.ArgumentTypeError(f"{text!r} is not an object state: {names}") from None


def _spin_client(args: argparse.Namespace, **callbacks):
    import rclpy
    from rclpy.exceptions import NameValidationException

    from stseg_ros.ros.map_client import MapClient

    rclpy.init()
    try:
        return rclpy, MapClient(args.node, name="stseg_cli", **callbacks)
    except NameValidationException as err:
        rclpy.try_shutdown()
        reason = str(err).splitlines()[0].rstrip(":")
        raise UsageError(f"--node {args.node!r}: not a usable ROS node name ({reason})") from None


def _cmd_watch(args: argparse.Namespace) -> int:
    from stseg_ros.core.report import format_epoch_changes, format_epoch_objects

    rclpy, client = _spin_client(
        args, on_instances=lambda e, objs: print(format_epoch_objects(e, objs), flush=True),
        on_changes=lambda e, chs: print(format_epoch_changes(e, chs), flush=True))
    try:
        client.spin_until(lambda: False, args.duration if args.duration > 0 else float("inf"))
    except KeyboardInterrupt:
        pass
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from stseg_ros.core.report import format_objects
    from stseg_ros.ros.conversions import object_from_msg

    region = None
    if args.region:
        region = (tuple(args.region[:3]), tuple(args.region[3:]))
    rclpy, client = _spin_client(args)
    try:
        answer = client.query(class_names=args.class_name, ids=args.id, states=args.state,
                              region=region, timeout=args.timeout)
    except TimeoutError as err:
        return fail(args, err, 1)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
    if not answer.success:
        print(f"stseg query: {answer.message}", file=sys.stderr)
        return 1
    print(f"{answer.message}\n{format_objects(object_from_msg(m) for m in answer.instances)}")
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser("demo", help="run the main job on the embedded defaults",
                         description="Replay a generated room's three revisits into the "
                                     "accumulator and mapper nodes (separate processes), print "
                                     "the objects and changes found, score them and draw the map.")
    p.add_argument("--out", type=Path, default=Path("stseg_demo"),
                   help="folder for the memory, logs, recording and picture (default stseg_demo)")
    p.add_argument("--rate", type=float, default=2.0, help="replay speed factor (default 2)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the mapper after the last bag")
    p.set_defaults(func=_cmd_demo)

    p = verbs.add_parser("serve", help="publish a stored map snapshot (map_server node)",
                         description="Run the map_server node in the foreground: publishes the "
                                     "epochs of a snapshot file on ~/instances, ~/detections, "
                                     "~/markers and ~/changes and serves ~/query_objects.")
    p.add_argument("--snapshot", default="", help="snapshot JSON (default: the shipped example)")
    p.add_argument("--epoch-period", type=float, default=1.0,
                   help="seconds between epochs; 0 publishes only the latest (default 1)")
    p.add_argument("--loop", action="store_true", help="start again after the last epoch")
    p.set_defaults(func=_cmd_serve)

    p = verbs.add_parser("replay", help="publish rosbag2 bags into the nodes, one revisit each",
                         description="Publish recorded bags (rosbag2 MCAP or sqlite3 folders, "
                                     "or a dataset from `stseg generate`) with their original "
                                     "timing and /clock, calling the accumulator's "
                                     "begin_revisit/end_revisit around each bag.")
    p.add_argument("bags", nargs="+", type=Path, help="bag folders, bag files or datasets")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1: real time)")
    p.add_argument("--no-revisits", action="store_true",
                   help="do not call begin/end revisit (the accumulator's idle timeout splits)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--accumulator", default="/accumulator", help="accumulator node name")
    p.add_argument("--mapper", default="/mapper", help="mapper node name")
    p.add_argument("--namespace", default="", help="prefix for the bags' topics (not /tf, /clock)")
    p.add_argument("--record", type=Path, help="write the mapper's outputs to this MCAP bag")
    p.add_argument("--wait", type=float, default=0.0,
                   help="then wait up to this many seconds for the mapper to publish every "
                        "replayed revisit")
    p.set_defaults(func=_cmd_replay)

    p = verbs.add_parser("watch", help="print the objects and changes a map node publishes")
    p.add_argument("--node", default="/mapper", help="map node to follow (default /mapper)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=_cmd_watch)

    p = verbs.add_parser("query", help="query the objects of a running map node",
                         description="Call <node>/query_objects; filters combine with AND.")
    p.add_argument("--node", default="/mapper", help="map node to ask (default /mapper)")
    p.add_argument("--class", dest="class_name", action="append", default=[],
                   help="class name (NYU40, or the robot's own with labels.label_set), "
                        "repeatable")
    p.add_argument("--id", type=int, action="append", default=[], help="object id, repeatable")
    p.add_argument("--state", type=_object_state, action="append", default=[],
                   metavar="STATE",
                   help="present, removed or unobserved (any case), or its number 0, 1, 2; "
                        "repeatable")
    p.add_argument("--region", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX",
                                                              "YMAX", "ZMAX"),
                   help="axis-aligned box in the map frame (m)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=_cmd_query)

