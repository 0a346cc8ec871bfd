//! Scenario runner (see issue 4): topologies, backends, third parties, measurements, reports.
