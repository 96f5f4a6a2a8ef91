"""Scores of every tract and their SHAP explanations."""
