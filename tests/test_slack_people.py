"""The interactions route's Slack calls (``adapters/slack_people.py``) through slack-sdk's
real client against the fake Slack: who is in a user group, an ephemeral message, and
each failure turned into a reason a presser can read (no token, URL or traceback in it)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from responder.adapters.slack_people import SlackWebPeople
from responder.ports import SlackLookupError
from tests.support.fake_notify import FakeSlack


async def test_group_members_and_an_ephemeral_through_the_web_api() -> None:
    async with FakeSlack(channels=["incidents"]) as slack:
        slack.add_usergroup("S0000000042", ["U0000000001", "U0000000002"])
        people = SlackWebPeople(
            token=slack.token, base_url=slack.api_url, timeout_s=2, ssl_context=None
        )
        try:
            members = await people.group_members("S0000000042")
            assert members == {"U0000000001", "U0000000002"}
            channel = slack.channel_id("incidents")
            await people.tell_privately(channel=channel, user="U0000000001", text="no")
            [told] = slack.ephemerals
            assert (told.channel, told.user, told.text) == (channel, "U0000000001", "no")
            # Slack's shape: message_ts, and nothing posted to the channel for everyone
            assert slack.messages("incidents") == []
        finally:
            await people.close()


async def test_slack_failures_become_reasons_without_the_token() -> None:
    async with FakeSlack(channels=["incidents"]) as slack:
        people = SlackWebPeople(
            token=slack.token, base_url=slack.api_url, timeout_s=2, ssl_context=None
        )
        try:
            with pytest.raises(SlackLookupError, match="no_such_subteam") as unknown:
                await people.group_members("S0000000099")
            slack.rate_limit(retry_after=7, times=1, method="usergroups.users.list")
            slack.add_usergroup("S0000000042", ["U0000000001"])
            with pytest.raises(SlackLookupError, match="rate limited") as limited:
                await people.group_members("S0000000042")
            assert await people.group_members("S0000000042") == {"U0000000001"}
            with pytest.raises(SlackLookupError, match="channel_not_found"):
                await people.tell_privately(channel="C0000009999", user="U1", text="x")
            for raised in (unknown, limited):
                assert slack.token not in str(raised.value)
                assert slack.url not in str(raised.value)
        finally:
            await people.close()


async def test_the_fake_answers_as_slack_does() -> None:
    """Through slack-sdk itself: the JSON shapes, the errors, 429 with Retry-After."""
    async with FakeSlack(channels=["incidents"]) as slack:
        web = AsyncWebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])
        channel = slack.channel_id("incidents")
        sent = await web.chat_postEphemeral(channel=channel, user="U0000000001", text="hi")
        assert sent["ok"] is True
        assert sent["message_ts"] == slack.ephemerals[0].message_ts
        # slack-sdk warns of a message without text before it sends it, as Slack refuses it
        with pytest.warns(UserWarning, match="text"), pytest.raises(SlackApiError) as empty:
            await web.chat_postEphemeral(channel=channel, user="U0000000001", text="")
        assert empty.value.response["error"] == "no_text"
        with pytest.raises(SlackApiError) as no_group:
            await web.usergroups_users_list(usergroup="S0000000001")
        assert no_group.value.response["error"] == "no_such_subteam"
        slack.add_usergroup("S0000000001", ["U0000000003"])
        listed = await web.usergroups_users_list(usergroup="S0000000001")
        assert listed["users"] == ["U0000000003"]
        slack.rate_limit(retry_after=3, times=1, method="chat.postEphemeral")
        with pytest.raises(SlackApiError) as limited:
            await web.chat_postEphemeral(channel=channel, user="U0000000001", text="hi")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "3"
        assert len(slack.ephemerals) == 1  # a refused request stores nothing
        bad_token = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
        with pytest.raises(SlackApiError) as unauthorized:
            await bad_token.usergroups_users_list(usergroup="S0000000001")
        assert unauthorized.value.response["error"] == "invalid_auth"
