"""Agents for dllm-gym environments: policies, evaluation and training.

This package uses only the public Gymnasium API and the registered environment ids; it never
imports ``dllm_gym`` internals.
"""
