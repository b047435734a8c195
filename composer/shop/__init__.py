"""A shop's profile: what it sells, its voice, and the example words written for it."""

from composer.shop.profile import (
    PROFILE_FILE,
    LocaleExamples,
    ProfileFile,
    ShopProfile,
    load_profile,
    save_profile,
)

__all__ = [
    "PROFILE_FILE",
    "LocaleExamples",
    "ProfileFile",
    "ShopProfile",
    "load_profile",
    "save_profile",
]
