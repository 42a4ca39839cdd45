"""Label sets shared by every room: CREMA-D's emotions and the age groups. The synthetic corpus, the real
readers, the teachers, the pipeline, the evaluation and the app all import them from here."""
from __future__ import annotations

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")  # CREMA-D's codes, in the order of every μ
EMOTION_NAMES = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
                 "SAD": "sad"}
AGE_GROUPS = ("young", "middle", "older")  # 20-34, 35-54, 55-74


def age_group(age: int) -> str:
    """The age group of an age in years."""
    return "young" if age < 35 else "middle" if age < 55 else "older"
