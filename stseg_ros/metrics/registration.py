"""Registration error of each revisit's transform into the map.

The map frame of a prediction is its own choice (typically the first
revisit's odom frame), so transforms are compared relative to epoch 0:
``inv(T_0) @ T_t`` takes revisit t's odom frame into revisit 0's, for the
truth and for the prediction alike. The rotation error is the angle of the
rotation between them; the translation error is the distance between where
they put revisit t's odom origin (its start pose), in metres.
"""

from __future__ import annotations

import numpy as np

from stseg_ros.core.pointcloud import rotation_angle_deg


def relative_error(true_t: np.ndarray, true_0: np.ndarray, pred_t: np.ndarray,
                   pred_0: np.ndarray) -> tuple[float, float]:
    """(rotation error in degrees, translation error in metres) of one revisit."""
    truth = np.linalg.inv(true_0) @ true_t
    pred = np.linalg.inv(pred_0) @ pred_t
    return (rotation_angle_deg(truth, pred),
            float(np.linalg.norm(pred[:3, 3] - truth[:3, 3])))
