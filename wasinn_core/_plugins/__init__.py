"""Backend plugin discovery: the pluggy hook specifications, the plugin manager and its hook checks."""
