"""Running a study: work units, who computes them (this process or Ray actors), the runner, the directions."""
