"""(Recurrent/text converters: to be written.)"""
