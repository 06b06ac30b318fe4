"""(Recurrent/text layers: to be written.)"""
