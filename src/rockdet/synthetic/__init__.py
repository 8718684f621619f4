"""Seeded synthetic terrain: scenes with exact rock masks, pretraining streams, perspective views with metric truth."""
