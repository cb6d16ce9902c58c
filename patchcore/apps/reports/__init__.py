"""Reports drawn from DVC: plot diffs as pictures, the experiment grid as a figure (outside the pipeline)."""
