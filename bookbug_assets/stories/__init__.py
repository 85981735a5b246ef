"""Story format: models, parsing and the JSON Schema export."""

from bookbug_assets.stories.models import BookFormat, Character, Page, Story, is_slug, page_key
from bookbug_assets.stories.parsing import StoryError, load_story_file, parse_story_bytes

__all__ = ["BookFormat", "Character", "Page", "Story", "StoryError", "is_slug", "load_story_file",
           "page_key", "parse_story_bytes"]
