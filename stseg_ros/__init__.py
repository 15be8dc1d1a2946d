"""stseg_ros: long-term object-level mapping with 4D semantic instance segmentation.

The core library (``stseg_ros.core``) is ROS-free; ``stseg_ros.ros`` holds the
thin ROS 2 layer that converts messages and schedules work.
"""

from pkgutil import extend_path

# The generated interface modules (stseg_ros.msg, stseg_ros.srv) may live in
# another directory than this source tree: in a plain virtual environment the
# package is installed editable and rosidl writes into site-packages. Extending
# __path__ lets both halves import as one package.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
