"""The embedded-log backend: Producer, Consumer and Replay over a data directory."""
