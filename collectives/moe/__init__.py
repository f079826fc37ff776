"""MoE traffic: routing generators, token layout, dispatch and combine algorithms."""
