"""Tests that need a CUDA device (`pytest -m gpu`); elsewhere they are collected and skipped."""

import pytest
import torch

CUDA = torch.cuda.is_available()
ON_GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
