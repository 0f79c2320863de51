"""Networks: processors (MPNN, Deep Sets, MLP) and the abstract encode-process-decode model."""
