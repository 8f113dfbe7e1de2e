"""What an operator watches a node by: its metrics and its traces."""
