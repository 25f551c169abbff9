"""The List API ("Querying a List of Training Job Configurations"): its query parameters and the
page it answers.

What the docs give, and what the sandbox does with it:

- ``per_page``: 1 to 1000, default 10; ``page``: from 1, default 1. Anything else (not a whole
  number, out of range) is a 400 ``ModelArts.0104``. An empty value counts as not given.
- ``sortBy``: ``config_name`` (default), ``config_desc`` or ``create_time``; ``order``: ``asc`` or
  ``desc`` (default ``desc``). Other values are a 400 ``ModelArts.0104``. Ties are broken by name.
- ``search_content``: the docs say only "search content, for example, a parameter name"; the
  sandbox keeps the configs whose name contains it, ignoring case.
- ``config_type``: ``custom`` (default: the project's own configs) or ``sample`` (Huawei's sample
  configs: the sandbox holds none, so an empty list). Other values are a 400 ``ModelArts.0104``.
- ``config_total_count`` counts every matching config, not just this page; a page past the end
  has no configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .data import summary

MAX_PER_PAGE = 1000
SORT_KEYS = ("config_name", "config_desc", "create_time")
ORDERS = ("asc", "desc")
CONFIG_TYPES = ("custom", "sample")


@dataclass(frozen=True)
class ListQuery:
    """The List API's query parameters, checked, with the docs' defaults."""

    per_page: int = 10
    page: int = 1
    sort_by: str = "config_name"
    order: str = "desc"
    search_content: str = ""
    config_type: str = "custom"

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ListQuery | str:
        """The query, or what is wrong with it (for a 400 ``ModelArts.0104``)."""
        given = {name: value for name, value in query.items() if value != ""}
        per_page = _whole_number(given.get("per_page", str(cls.per_page)), 1, MAX_PER_PAGE)
        if per_page is None:
            return f"per_page must be a whole number from 1 to {MAX_PER_PAGE}"
        page = _whole_number(given.get("page", str(cls.page)), 1, None)
        if page is None:
            return "page must be a whole number from 1"
        chosen = {"sortBy": given.get("sortBy", cls.sort_by), "order": given.get("order", cls.order),
                  "config_type": given.get("config_type", cls.config_type)}
        for name, allowed in (("sortBy", SORT_KEYS), ("order", ORDERS), ("config_type", CONFIG_TYPES)):
            if chosen[name] not in allowed:
                return f"{name} must be one of {', '.join(allowed)}"
        return cls(per_page, page, chosen["sortBy"], chosen["order"], given.get("search_content", ""),
                   chosen["config_type"])

    def answer(self, configs: Mapping[tuple[str, str], dict[str, Any]], created: Mapping[tuple[str, str], int],
               project_id: str) -> dict[str, Any]:
        """The List answer over a project's stored configs: the count of all that match, and
        this page of them, each as the List API summarises a config."""
        wanted = self.search_content.casefold()
        names = [] if self.config_type == "sample" else [
            name for project, name in configs if project == project_id and wanted in name.casefold()]

        def sort_key(name: str) -> tuple[Any, str]:
            key = (project_id, name)
            if self.sort_by == "create_time":
                return created.get(key, 0), name
            if self.sort_by == "config_desc":
                return str(configs[key].get("config_desc") or ""), name
            return name, name

        names.sort(key=sort_key, reverse=self.order == "desc")
        start = (self.page - 1) * self.per_page
        shown = [summary(name, configs[(project_id, name)], created.get((project_id, name), 0))
                 for name in names[start:start + self.per_page]]
        return {"is_success": True, "config_total_count": len(names), "configs": shown}


def _whole_number(text: str, low: int, high: int | None) -> int | None:
    """``text`` as a whole number within [low, high], or None."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    number = int(text)
    if number < low or (high is not None and number > high):
        return None
    return number
