//! The commands that decide from many runs or from finished reports: `compare` (did B
//! regress against A), `repeat` (one verdict from N runs of a scenario), `sweep` (one row
//! per combination of settings) and `breakpoint` (the load at which a gate first fails).
//! Each runs scenarios through `run` and leaves the rendering of its results to `report/`.

pub mod breakpoint;
pub mod compare;
pub mod repeat;
pub mod sweep;
