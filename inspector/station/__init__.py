"""Station runtime: frame sources, triggers, the inspection loop and its sinks."""
