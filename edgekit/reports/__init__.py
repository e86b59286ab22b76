"""Human-readable reports rendered from a bundle's manifest."""
