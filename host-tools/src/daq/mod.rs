//! H5DAQ-style DAQ jobs and the daemon that writes them to HDF5.
