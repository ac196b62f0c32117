//! vigil-billing (in progress)
