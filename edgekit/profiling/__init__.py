"""Measuring models and artifacts: complexity (params, MACs), latency, accuracy through runtimes."""
