"""The DAQ's performance tools: the bench, the end-to-end chain at rate, scaling, the CI check."""
