"""The suite's own pytest plugins and the recorders they load into test processes."""
