"""Regenerate the README's screenshots: the app in production mode on the stackql stand-in and a local fake
Anthropic API with scripted answers, driven through a user's flow in Chromium.

    .venv/bin/python docs/screenshots/make_screenshots.py [--out docs/screenshots] [--keep]

Writes providers.png, ide.png, schedules.png and inventory.png (1440×900). Takes a few minutes: the app
builds its frontend first. Nothing leaves this machine; all data lives in a temporary folder (`--keep`
leaves it and prints where).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.fakes.anthropic_api import FakeAnthropic, Reply  # noqa: E402
from tests.fakes.install import install_fake_stackql  # noqa: E402
from tests.support.app_server import start_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1440, "height": 900}
API_KEY = "sk-ant-screenshots"

FIRST_QUERY = "SELECT instanceId, instanceType, instanceState\nFROM aws.ec2.instances\nWHERE region = 'us-east-1'"
ASSISTANT_SQL = ("SELECT instanceId, instanceType,\n"
                 "       json_extract(instanceState, '$.Name') AS state,\n"
                 "       launchTime\n"
                 "FROM aws.ec2.instances\n"
                 "WHERE region = 'us-east-1'\n"
                 "ORDER BY launchTime DESC;")
ASSISTANT_ANSWER = (
    "`aws.ec2.instances` needs the `region` parameter, and `instanceState` is a JSON object, so take its "
    "`Name` with `json_extract`:\n\n"
    f"```sql\n{ASSISTANT_SQL}\n```\n\n"
    "Newest launches come first. For more regions, use `region IN ('us-east-1', 'eu-west-1')`.")
# Further saved queries, scheduled from their links, for a catalogue with more than one table.
MORE_QUERIES = (
    ("IAM users", "SELECT UserName, UserId, CreateDate, PasswordLastUsed FROM aws.iam.users "
                  "WHERE region = 'us-east-1'", "aws_iam_users"),
    ("S3 buckets (no region yet)", "SELECT name FROM aws.s3.buckets", "aws_s3_buckets"),
)


def words(text: str) -> list[str]:
    """The answer in small chunks, as the API streams it."""
    return re.findall(r"\S+\s*|\s+", text)


def type_into_editor(page: Page, text: str) -> None:
    page.locator("[data-testid=ide-editor] .monaco-editor").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    for i, line in enumerate(text.split("\n")):
        if i:
            page.keyboard.insert_text("\n")
            page.keyboard.press("Home")
        page.keyboard.type(line)
    page.wait_for_timeout(150)
    page.keyboard.press("Escape")


def map_aws(page: Page) -> None:
    page.goto("/providers")
    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-preset").click()
    page.get_by_test_id("provider-preset-aws").click()
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("provider-save")).to_have_count(0)
    for env_var, value in (("AWS_ACCESS_KEY_ID", "AKIAEXAMPLESCREENSHOT"),
                           ("AWS_SECRET_ACCESS_KEY", "screenshot/example+secret/value")):
        page.get_by_test_id("provider-row").filter(has_text=env_var).get_by_test_id("provider-set-value").click()
        page.get_by_test_id("provider-secret-value").fill(value)
        page.get_by_test_id("provider-value-save").click()
        expect(page.get_by_test_id("provider-secret-value")).to_have_count(0)
    page.get_by_test_id("provider-validate").click()
    for status in page.get_by_test_id("provider-status").all():
        expect(status).to_have_attribute("data-state", "ok")
    page.get_by_test_id("provider-test").click()
    expect(page.get_by_test_id("provider-test-result")).to_have_attribute("data-state", "ok", timeout=60_000)


def ide_with_assistant(page: Page, fake: FakeAnthropic) -> None:
    page.goto("/ide")
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines", timeout=60_000)
    type_into_editor(page, FIRST_QUERY)
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("5 rows", timeout=60_000)
    fake.enqueue(Reply.text(words(ASSISTANT_ANSWER), delays=0.01, input_tokens=1840, output_tokens=96))
    page.get_by_test_id("chat-input").fill("Which instances in us-east-1 were launched most recently, and are "
                                           "they running?")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-insert-sql")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(500)


def save_assistant_query(page: Page) -> None:
    type_into_editor(page, "")
    page.get_by_test_id("chat-insert-sql").click()
    page.wait_for_function("() => window.__stackqlIde.value().includes('launchTime DESC')")
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("5 rows")
    page.get_by_test_id("ide-save").click()
    page.get_by_test_id("save-name").fill("EC2 instances (us-east-1)")
    page.get_by_test_id("save-description").fill("Every instance in us-east-1 with its type, state and launch time.")
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("save-confirm")).to_have_count(0)


def schedule_from_dialog(page: Page, table: str, *, cron: str, keys: str = "") -> None:
    expect(page.get_by_test_id("schedule-save")).to_be_visible()
    page.get_by_test_id("schedule-cron").fill(cron)
    page.get_by_test_id("schedule-target-table").fill(table)
    if keys:
        page.get_by_test_id("schedule-write-mode").click()
        page.get_by_role("option").filter(has_text="history").first.click()
        page.get_by_test_id("schedule-key-columns").fill(keys)
    page.get_by_test_id("schedule-target-table").blur()
    page.wait_for_timeout(300)
    page.get_by_test_id("schedule-save").click()
    expect(page.get_by_test_id("schedule-save")).to_have_count(0)


def run_now(page: Page, table: str, until: str) -> None:
    row = page.get_by_test_id("schedule-row").filter(has_text=f"stackql_inventory.{table}")
    expect(row.get_by_test_id("schedule-run-now")).to_be_enabled(timeout=60_000)
    row.get_by_test_id("schedule-run-now").click()
    expect(row.get_by_test_id("schedule-status")).to_have_text(until, timeout=90_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stackql-screenshots-"))
    install_fake_stackql(work / "stackql")
    with FakeAnthropic(api_keys={API_KEY}) as fake:
        env = {"STACKQL_INVENTORY_DATA_DIR": str(work / "data"), "STACKQL_DOWNLOAD_DIR": str(work / "stackql"),
               "ANTHROPIC_BASE_URL": fake.base_url, "ANTHROPIC_API_KEY": API_KEY}
        (work / "app").mkdir()
        app = start_app(env, work / "app" / "app.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport=VIEWPORT, base_url=app.url).new_page()
                page.set_default_timeout(30_000)
                args.out.mkdir(parents=True, exist_ok=True)

                map_aws(page)
                page.screenshot(path=str(args.out / "providers.png"))

                ide_with_assistant(page, fake)
                page.screenshot(path=str(args.out / "ide.png"))
                save_assistant_query(page)

                page.get_by_test_id("ide-schedule").click()
                schedule_from_dialog(page, "aws_ec2_instances", cron="*/30 * * * *", keys="instanceId")
                for name, text, table in MORE_QUERIES:
                    page.goto("/ide")
                    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines")
                    page.get_by_test_id("ide-detach-query").click()  # a new query, not an edit of the last
                    type_into_editor(page, text)
                    page.get_by_test_id("ide-save").click()
                    page.get_by_test_id("save-name").fill(name)
                    page.get_by_test_id("save-confirm").click()
                    expect(page.get_by_test_id("save-confirm")).to_have_count(0)
                    page.get_by_test_id("ide-schedule").click()
                    schedule_from_dialog(page, table, cron="0 */6 * * *")
                run_now(page, "aws_ec2_instances", "success")
                run_now(page, "aws_iam_users", "success")
                run_now(page, "aws_s3_buckets", "failed")
                page.get_by_test_id("schedule-row").filter(has_text="stackql_inventory.aws_ec2_instances") \
                    .get_by_test_id("schedule-history").click()
                run_now(page, "aws_ec2_instances", "success")  # a second run: two runs to compare
                expect(page.get_by_test_id("schedule-run-status")).to_have_text(["success", "success"],
                                                                                timeout=90_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / "schedules.png"))

                page.get_by_test_id("nav-inventory").click()
                page.locator('[data-testid=inventory-table-row][data-name="aws_ec2_instances"]').click()
                expect(page.get_by_test_id("inventory-preview-row")).to_have_count(5)
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / "inventory.png"), full_page=True)
                browser.close()
        finally:
            app.stop()
    if args.keep:
        print(f"data kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots written to {args.out}")


if __name__ == "__main__":
    main()
