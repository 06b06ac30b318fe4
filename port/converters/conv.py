"""(CNN converters: to be written.)"""
