"""Alada on a device mesh (8 simulated CPU devices by default): see main.py and train.py."""
