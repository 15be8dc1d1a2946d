"""Live ingest of a revisit (ROS-free): pairing colour and depth images, camera
poses from transforms, and fusing frames off the message thread."""
