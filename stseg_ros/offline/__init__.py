"""Jobs run over files from the command line, on top of the mapper and the
learned parts: mapping inputs offline (`stseg run`) and training the cluster
classifier (`stseg train-classifier`)."""
