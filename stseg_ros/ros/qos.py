"""Quality-of-service profiles of the published map state."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Latest map state: a late subscriber (RViz, a planner) gets it at once.
MAP_STATE_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Change events: one message per epoch; keep a history for late subscribers.
CHANGE_EVENTS_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                               reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Finished revisits, accumulator -> mapper: none may be lost, and a mapper that
# starts (or restarts) a little late still gets the last few.
REVISIT_QOS = QoSProfile(depth=4, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
