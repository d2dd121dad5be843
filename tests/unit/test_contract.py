"""The breaking-change check: the committed spec against the released baseline, and the checker
itself against deliberately broken copies of the spec."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local import contract

Spec = dict[str, Any]


def spec() -> Spec:
    loaded: Spec = json.loads(contract.OPENAPI.read_text())
    return loaded


def keys(old: Spec, new: Spec) -> set[str]:
    return {finding.key for finding in contract.breaking_changes(old, new)}


def schemas(document: Spec) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def test_committed_openapi_json_has_no_undeclared_breaking_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = contract.main([])
    assert status == 0, capsys.readouterr().err


def test_identical_documents_have_no_breaking_change() -> None:
    assert contract.breaking_changes(spec(), spec()) == []


def _remove_operation(d: Spec) -> None:
    del d["paths"]["/posts/{post_id}"]["delete"]


def _rename_operation(d: Spec) -> None:
    d["paths"]["/posts"]["post"]["operationId"] = "new_post"


def _remove_response_field(d: Spec) -> None:
    del schemas(d)["PostOut"]["properties"]["title"]
    schemas(d)["PostOut"]["required"].remove("title")


def _newly_required_request_field(d: Spec) -> None:
    schemas(d)["UserCreate"]["required"].append("welcome_post")


def _new_required_query_parameter(d: Spec) -> None:
    d["paths"]["/posts"]["get"]["parameters"].append(
        {"name": "lang", "in": "query", "required": True, "schema": {"type": "string"}}
    )


def _narrowed_request_type(d: Spec) -> None:
    schemas(d)["TransferRequest"]["properties"]["to_user_id"] = {"type": "string"}


def _lowered_request_bound(d: Spec) -> None:
    schemas(d)["PostCreate"]["properties"]["title"]["maxLength"] = 100


def _raised_bound_of_an_optional_query_parameter(d: Spec) -> None:
    (q,) = [p for p in d["paths"]["/posts"]["get"]["parameters"] if p["name"] == "q"]
    (text,) = [v for v in q["schema"]["anyOf"] if v.get("type") == "string"]
    text["minLength"] += 1


def _widened_response_type(d: Spec) -> None:
    schemas(d)["TransferOut"]["properties"]["moved"] = {"type": ["integer", "string"]}


def _removed_status(d: Spec) -> None:
    del d["paths"]["/posts/{post_id}"]["get"]["responses"]["404"]


def _removed_header(d: Spec) -> None:
    del d["paths"]["/posts"]["post"]["responses"]["201"]["headers"]["Location"]


def _response_field_no_longer_required(d: Spec) -> None:
    schemas(d)["TokenOut"]["required"].remove("expires_in")


BREAKS: list[tuple[Callable[[Spec], None], set[str]]] = [
    (_remove_operation, {"delete_post operation-removed DELETE /posts/{post_id}"}),
    (_rename_operation, {"create_post operation-id-changed new_post"}),
    (
        _remove_response_field,
        {
            f"{op} property-removed {where}"
            for op, where in [
                ("create_post", "response.201.title"),
                ("get_post", "response.200.title"),
                ("update_post", "response.200.title"),
                ("publish_post", "response.200.title"),
            ]
        },
    ),
    (_newly_required_request_field, {"register_user property-newly-required body.welcome_post"}),
    (_new_required_query_parameter, {"list_posts parameter-newly-required query.lang"}),
    (_narrowed_request_type, {"transfer_posts type-narrowed body.to_user_id"}),
    (_lowered_request_bound, {"create_post type-narrowed body.title.maxLength"}),
    (
        _raised_bound_of_an_optional_query_parameter,
        {"list_posts type-narrowed query.q.minLength"},
    ),
    (_widened_response_type, {"transfer_posts type-widened response.200.moved"}),
    (_removed_status, {"get_post status-removed response.404"}),
    (_removed_header, {"create_post header-removed response.201.header.Location"}),
    (
        _response_field_no_longer_required,
        {"issue_token property-no-longer-required response.200.expires_in"},
    ),  # noqa: E501
]


@pytest.mark.parametrize(("breaking", "expected"), BREAKS, ids=[b.__name__[1:] for b, _ in BREAKS])
def test_each_kind_of_breaking_change_is_found(
    breaking: Callable[[Spec], None], expected: set[str]
) -> None:
    broken = spec()
    breaking(broken)
    assert keys(spec(), broken) == expected


def test_additions_are_not_breaking() -> None:
    # Given a new optional request field, a new response field, a new status and a new operation
    grown = spec()
    schemas(grown)["PostCreate"]["properties"]["summary"] = {"type": "string"}
    schemas(grown)["PostOut"]["properties"]["excerpt"] = {"type": "string"}
    schemas(grown)["PostOut"]["required"].append("excerpt")
    grown["paths"]["/posts/{post_id}"]["get"]["responses"]["410"] = {"description": "Gone"}
    grown["paths"]["/health"] = {"get": {"operationId": "health", "responses": {}}}
    schemas(grown)["PostCreate"]["properties"]["title"]["maxLength"] += 100
    # Then nothing breaks
    assert keys(spec(), grown) == set()


def test_the_check_fails_on_a_broken_copy_until_the_changelog_declares_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a copy of the spec with an operation removed and a response field removed
    broken = spec()
    _remove_operation(broken)
    _remove_response_field(broken)
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(broken))
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## Unreleased\n\n### Breaking\n")
    args = ["--spec", str(path), "--baseline", str(contract.OPENAPI), "--changelog", str(changelog)]
    # When it is checked with nothing declared, then it fails, naming each key to declare
    assert contract.main(args) == 1
    err = capsys.readouterr().err
    assert "- `delete_post operation-removed DELETE /posts/{post_id}`" in err
    assert "- `get_post property-removed response.200.title`" in err
    # When only some are declared, it still fails
    changelog.write_text(
        changelog.read_text() + "- `delete_post operation-removed *` — posts are forever now\n"
    )
    assert contract.main(args) == 1
    # When a pattern declares the rest, it passes
    changelog.write_text(
        changelog.read_text() + "- `* property-removed response.*title` — titles moved away\n"
    )
    assert contract.main(args) == 0


def test_only_the_unreleased_breaking_section_declares() -> None:
    text = (
        "# Changelog\n\n## Unreleased\n\n### Added\n- `list_posts *` not a declaration\n\n"
        "### Breaking\n- `get_user property-removed response.200.email` — private now\n"
        "* `list_users *` — and this\n\n"
        "## 1.0.0\n\n### Breaking\n- `delete_post *` — released long ago\n"
    )
    assert contract.declared(text) == [
        "get_user property-removed response.200.email",
        "list_users *",
    ]


def test_a_field_dropped_from_one_schema_is_declared_everywhere_by_one_pattern() -> None:
    # Given UserOut loses its email (every operation that returns a user reports it)
    changed = spec()
    del schemas(changed)["UserOut"]["properties"]["email"]
    schemas(changed)["UserOut"]["required"].remove("email")
    findings = contract.breaking_changes(spec(), changed)
    assert {f.operation for f in findings} >= {"deactivate_user", "register_user", "update_user"}
    # Then one pattern covers them all
    assert contract.undeclared(findings, ["* property-removed response.*email"]) == []


def test_accept_makes_the_spec_the_new_baseline(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{}")
    assert contract.main(["--accept", "--baseline", str(baseline)]) == 0
    assert json.loads(baseline.read_text()) == spec()


def test_a_key_of_an_array_item_is_declared_verbatim_or_by_pattern() -> None:
    finding = contract.Finding("list_posts", "property-removed", "response.200.items[].content")
    assert contract.undeclared([finding], [finding.key]) == []
    assert contract.undeclared([finding], ["list_* property-removed *.content"]) == []
    assert contract.undeclared([finding], ["list_posts property-removed response.200.items"]) == [
        finding
    ]


def test_the_spec_at_a_git_revision_can_be_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The committed spec of this checkout's HEAD against a copy with an operation removed
    broken = spec()
    _remove_operation(broken)
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(broken))
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("## Unreleased\n### Breaking\n")
    args = ["--ref", "HEAD", "--spec", str(path), "--changelog", str(changelog)]
    assert contract.main(args) == 1
    assert "delete_post operation-removed" in capsys.readouterr().err
    assert contract.main(["--ref", "no-such-revision"]) == 2


def test_a_response_that_may_now_be_another_object_must_keep_its_fields() -> None:
    # Given get_post answering PostOut or a new object without the title
    changed = spec()
    schemas(changed)["PostTeaser"] = {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
    }
    content = changed["paths"]["/posts/{post_id}"]["get"]["responses"]["200"]["content"]
    content["application/json"]["schema"] = {
        "anyOf": [
            {"$ref": "#/components/schemas/PostOut"},
            {"$ref": "#/components/schemas/PostTeaser"},
        ]
    }
    found = keys(spec(), changed)
    assert "get_post property-removed response.200.title" in found
    assert "get_post property-removed response.200.content" in found
