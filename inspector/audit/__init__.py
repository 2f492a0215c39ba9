"""HDF5 audit log: crash-safe writer, reader, exports."""
