"""(CNN layers: to be written.)"""
