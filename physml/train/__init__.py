"""Trainers (PINN, Lagrangian PINN, TENG), their problems, samplers, loss balancing and the
least-squares machinery of TENG."""
