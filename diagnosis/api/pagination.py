from rest_framework import pagination

DESCRIPTIONS = {"count": "Items on all pages together.", "next": "The next page; null on the last one.",
                "previous": "The previous page; null on the first one.", "results": "The items on this page."}


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=N`, and `?page_size=N` (at most 100) for clients that want fewer round trips."""

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        for name, text in DESCRIPTIONS.items():
            response["properties"][name]["description"] = text
        return response
