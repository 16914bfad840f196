"""Request limits per user and per anonymous address (BRAINSCAN_API_USER_RATE, BRAINSCAN_API_ANON_RATE).

DRF's own classes read the rates once, at import; these read them per request, so a changed setting
(in a test, say) takes effect.
"""

from rest_framework import throttling
from rest_framework.settings import api_settings


class _RateFromSettings:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class AnonymousRateThrottle(_RateFromSettings, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_RateFromSettings, throttling.UserRateThrottle):
    pass
