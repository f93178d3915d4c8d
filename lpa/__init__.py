"""lpa: a reproducibility pipeline for "Learn To Pay Attention" (Jetley et al., ICLR 2018)."""
