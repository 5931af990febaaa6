"""Model development for FER-TMS: load FER2013, train, evaluate and export to int8 TFLite.

Only this package imports TensorFlow/Keras (the optional ``train`` extra); the
client runs the exported model on LiteRT alone.
"""
