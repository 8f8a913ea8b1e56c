"""Head motion: the signal watched live, its episodes, the pose from the list-mode, the correction."""
