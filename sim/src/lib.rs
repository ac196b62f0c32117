//! vigil-sim (in progress)
