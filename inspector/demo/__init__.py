"""The demo line: synthetic ring parts (the demo camera and data set) and the benchmark."""
