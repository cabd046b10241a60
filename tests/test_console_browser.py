"""The console as people use it: each role's journey in headless Chromium (Debian's), against the
real app served by uvicorn on loopback, Temporal's time-skipping test server and a worker.

Every request the browser makes is checked: anything for elsewhere than the console's origin is
refused and recorded, and each journey ends by asserting there was none. Each journey saves
screenshots under test-artifacts/console/ (gitignored). axe-core (vendored from npm at install time
by `make`) checks every page for serious or critical accessibility violations.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session, func, select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import issue_token
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.models import CallerDataRead, CaseRecord, ClockRecord
from disputeflow.db.reference import seed_reference
from disputeflow.settings import DEFAULT_REFERENCE_FILE, Settings
from disputeflow.temporal import data_converter, register_search_attributes
from tests.conftest import IN_CI, free_port, installed_binary
from tests.test_docs_browser import CHROMIUM, CHROMIUM_ARGS
from worker import build_worker

try:
    from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect
except ImportError:
    async_playwright = None

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "console"
AXE = Path(os.environ.get("DISPUTEFLOW_TEST_AXE", PROJECT_ROOT / ".venv" / "axe-core" / "axe.min.js"))
TIMEOUT_MS = 15_000


@dataclass
class Console:
    origin: str
    env: WorkflowEnvironment
    settings: Settings
    engine: Any
    browser: Browser
    left: list[str] = field(default_factory=list)  # requests that tried to leave the machine

    def cases_described(self, text: str) -> list[CaseRecord]:
        with Session(self.engine) as session:
            return list(session.exec(select(CaseRecord).where(CaseRecord.description == text)))

    async def projected(self, case_id: str, until: Any = lambda r: True, tries: int = 200) -> CaseRecord:
        for _ in range(tries):
            with Session(self.engine) as session:
                record = session.get(CaseRecord, case_id)
            if record is not None and until(record):
                return record
            await asyncio.sleep(0.05)
        raise AssertionError(f"case {case_id} was not projected as expected")

    async def context(self) -> BrowserContext:
        context = await self.browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)

        async def refuse(route: Route) -> None:
            self.left.append(route.request.url)
            await route.abort("internetdisconnected")

        await context.route(lambda url: not url.startswith(self.origin + "/"), refuse)
        return context


async def sign_in(page: Page, console: Console, user_id: str, check: bool = False) -> None:
    await page.goto(f"{console.origin}/")
    await expect(page.locator("h1")).to_have_text("登录")
    if check:
        await accessible(page, "sign-in page")
    await page.get_by_test_id(f"signin-{user_id}").click()
    await expect(page.get_by_test_id("who")).to_be_visible()


# Three English words in a row: a sentence or a title the domain said in English. What a Chinese
# page may show in Latin letters is ids (case, user, clock, route), codes and product names.
ENGLISH_WORDS = re.compile(r"\b[A-Za-z]{2,}(?:[ ,:;'’-]+[A-Za-z]{2,}){2,}\b")
LATIN_ALLOWED = ("Temporal Web UI",)


def english_in(text: str) -> list[str]:
    for allowed in LATIN_ALLOWED:
        text = text.replace(allowed, " ")
    return ENGLISH_WORDS.findall(text)


async def chinese_only(page: Page, what: str) -> None:
    """A Chinese page shows no English domain text: task titles, refusals, the timeline's sentences,
    clock and stage names all come from the catalogue."""
    assert english_in(await page.locator("body").inner_text()) == [], what


async def shot(page: Page, journey: str, step: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{journey}-{step}.png"), full_page=True)


async def accessible(page: Page, what: str) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    await page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
                           .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '));
    }""")
    assert result == [], f"{what}: {result}"


@pytest.fixture(scope="module")
def tools() -> None:
    problem = None
    if async_playwright is None:
        problem = "playwright is not installed (the test extra)"
    elif not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} not found (`make test` installs Debian's chromium as root)"
    elif not AXE.exists():
        problem = f"{AXE} not found (`make test` fetches axe-core with npm)"
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
async def console(tools: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    data_dir = tmp_path_factory.mktemp("console")
    queue = f"console-{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, data_dir=data_dir, temporal_namespace="default", temporal_task_queue=queue,
                        database_url=f"sqlite:///{(data_dir / 'disputeflow.db').as_posix()}",
                        temporal_address="set-below")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"), data_converter=data_converter(settings))
    try:
        await register_search_attributes(env.client, "default")
        settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        engine = engine_for(settings.effective_database_url)
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        app = create_app(settings, clock=env.get_current_time)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        async with build_worker(env.client, settings, engine, task_queue=queue):
            serving = asyncio.create_task(server.serve())
            try:
                for _ in range(200):
                    if server.started:
                        break
                    await asyncio.sleep(0.05)
                assert server.started, "uvicorn did not start"
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    try:
                        yield Console(f"http://127.0.0.1:{port}", env, settings, engine, browser)
                    finally:
                        await browser.close()
            finally:
                server.should_exit = True
                await serving
    finally:
        await env.shutdown()


@dataclass
class Carried:
    """What one journey hands the next: the case carried from registration to closure."""

    case_id: str = ""
    mediator: str = ""


CARRIED = Carried()


async def test_operator_registers_a_call(console: Console) -> None:
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, "op-1", check=True)
    await expect(page.locator("h1")).to_have_text("登记来电")
    await accessible(page, "intake form")
    await shot(page, "operator", "1-intake")

    description = f"工地拖欠三个月工资，包工头失联。{uuid.uuid4().hex[:8]}"
    phone = f"1390{uuid.uuid4().int % 10**7:07d}"
    # Keyboard only: every field is reached with Tab, in order.
    await page.locator("#caller-name").focus()
    await page.keyboard.type("张三")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "caller-phone"
    await page.keyboard.type("1234567")  # not a phone number
    await expect(page.get_by_test_id("phone-live")).to_contain_text("不是有效的电话号码")  # as it is typed
    await page.locator("#description").fill(description)
    await page.locator("#dispute-type").select_option("labour_wages")
    await page.locator("#g-migrant_worker").check()
    await page.get_by_test_id("register").focus()
    await page.keyboard.press("Enter")
    # The error beside the field, and nothing typed lost.
    await expect(page.get_by_test_id("error-caller.phone")).to_contain_text("不是有效的电话号码")
    assert await page.locator("#caller-phone").get_attribute("aria-invalid") == "true"
    await expect(page.locator("#caller-name")).to_have_value("张三")
    await expect(page.locator("#caller-phone")).to_have_value("1234567")
    await expect(page.locator("#description")).to_have_value(description)
    await expect(page.locator("#g-migrant_worker")).to_be_checked()
    await expect(page.locator("#dispute-type")).to_have_value("labour_wages")
    assert console.cases_described(description) == []
    await accessible(page, "intake form with errors")
    await shot(page, "operator", "2-bad-phone")

    # Fixed, and submitted with a double click: one case.
    await page.locator("#caller-phone").fill(phone)
    await page.get_by_test_id("register").dblclick()
    await expect(page.locator("h1")).to_have_text(re.compile(r"案件 370102-\d{8}-\d{4}"))
    case_id = (await page.locator("h1").text_content() or "").split()[-1]
    record = await console.projected(case_id)
    assert [c.case_id for c in console.cases_described(description)] == [case_id]
    assert record.caller_phone.endswith(phone)
    await accessible(page, "case page (operator)")
    await chinese_only(page, "case page (operator)")
    await expect(page.locator("section[aria-labelledby=h-tasks]")).to_contain_text("分流来电")
    await shot(page, "operator", "3-case")

    # The same form sent again with its key (a retry after a lost answer) finds the same case.
    await page.goto(f"{console.origin}/console/intake")
    key = await page.locator("input[name=idempotency_key]").input_value()
    csrf = await page.locator("input[name=csrf]").first.input_value()
    form = {"csrf": csrf, "idempotency_key": key, "channel": "hotline", "caller.name": "李四", "caller.phone": phone,
            "region_code": "370102", "category": "dispute", "dispute_type": "neighbours", "urgency": "normal",
            "description": description + "-retry"}
    first = await page.request.post(f"{console.origin}/console/intake", form=form, max_redirects=0)
    again = await page.request.post(f"{console.origin}/console/intake", form=form, max_redirects=0)
    assert first.status == again.status == 303 and first.headers["location"] == again.headers["location"]
    assert len(console.cases_described(description + "-retry")) == 1

    # Duplicate hints as the phone is typed (sent in a POST body, not in a URL).
    await page.goto(f"{console.origin}/console/intake")
    await page.locator("#caller-phone").press_sequentially(phone)
    await expect(page.get_by_test_id("duplicates")).to_contain_text(case_id)
    await shot(page, "operator", "4-duplicates")

    # Send it to mediation from the case page: only what an operator may do now is offered.
    await page.goto(f"{console.origin}/console/cases/{case_id}")
    offered = await page.locator("details.action").evaluate_all("ds => ds.map(d => d.dataset.action)")
    assert "send_to_mediation" in offered and "record_mediation_session" not in offered and "decide_extension" not in offered
    # A refusal is shown in words: a referral outcome in triage (roles allow it, the stage does not:
    # not offered, so sent by hand as a stale form would be).
    refused = await page.request.post(f"{console.origin}/console/cases/{case_id}/act/record_referral_outcome",
                                      form={"csrf": csrf, "accepted": "true"})
    assert refused.status == 409
    refusal = await refused.text()
    assert "案件处于「分流」阶段，不能办理「记录转交结果」（可办理的阶段：已转交）。" in refusal
    assert english_in(re.sub(r"<[^>]+>", " ", refusal.split("<main", 1)[-1])) == []
    await page.locator("details[data-action=send_to_mediation] summary").focus()
    await page.keyboard.press("Enter")  # opens the form by keyboard
    await page.get_by_test_id("do-send_to_mediation").click()
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。")
    await expect(page.get_by_test_id("mediator")).to_contain_text("med-370102")
    mediator = re.search(r"med-370102-\d\d", await page.get_by_test_id("mediator").text_content() or "").group(0)
    await shot(page, "operator", "5-in-mediation")
    await context.close()
    CARRIED.case_id, CARRIED.mediator = case_id, mediator
    assert console.left == []


async def test_mediator_works_their_case_and_another_cannot_see_it(console: Console) -> None:
    case_id = CARRIED.case_id
    assert case_id, "runs after test_operator_registers_a_call"
    await console.projected(case_id, lambda r: r.mediator_id == CARRIED.mediator)

    # Another mediator: not in the inbox, not in the list, 404 by URL, 404 to a posted action.
    other = "med-370102-02" if CARRIED.mediator != "med-370102-02" else "med-370102-03"
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, other)
    await expect(page.locator("h1")).to_have_text("我的待办")
    assert case_id not in await page.content()
    await page.goto(f"{console.origin}/console/cases")
    assert case_id not in await page.content()
    await accessible(page, "case list")
    response = await page.goto(f"{console.origin}/console/cases/{case_id}")
    assert response is not None and response.status == 404
    await expect(page.get_by_test_id("error-detail")).to_have_text(f"case {case_id} not found")
    await accessible(page, "404 page")
    await shot(page, "mediator", "1-other-mediator-404")
    csrf = await page.locator("body").get_attribute("data-csrf")
    acted = await page.request.post(f"{console.origin}/console/cases/{case_id}/act/record_mediation_session",
                                    form={"csrf": csrf or "", "outcome": "agreement"})
    assert acted.status == 404
    await context.close()

    # The assigned mediator: the case in the inbox with its countdown and colour.
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, CARRIED.mediator)
    row = page.locator(f"tr[data-case='{case_id}']")
    await expect(row).to_be_visible()
    await expect(row.locator(".badge")).to_have_text(re.compile("正常|预警|超时"))
    await expect(row.locator("time.countdown")).to_contain_text("剩余")
    await accessible(page, "inbox")
    await chinese_only(page, "inbox (mediator)")
    await expect(row).to_contain_text("组织调解并记录结果")
    await shot(page, "mediator", "2-inbox")
    await row.get_by_role("link", name=case_id).click()
    offered = await page.locator("details.action").evaluate_all("ds => ds.map(d => d.dataset.action)")
    assert "record_mediation_session" in offered and "send_to_mediation" not in offered
    assert "reassign_mediator" not in offered  # a supervisor's

    # A bad form value shows its error beside the field (the schema's own check).
    await page.locator("details[data-action=request_extension] summary").click()
    form = page.locator("details[data-action=request_extension] form")
    await form.locator("[name='by.amount']").fill("0")
    await form.locator("[name='reason']").fill("当事人出差")
    await form.evaluate("f => f.noValidate = true")
    await page.get_by_test_id("do-request_extension").click()
    await expect(page.get_by_test_id("error-by.amount")).to_have_text("须大于 0")
    await expect(page.locator("details[data-action=request_extension] [name='reason']")).to_have_value("当事人出差")
    await accessible(page, "case page with a form error")
    await shot(page, "mediator", "3-form-error")

    for action, fill in (("record_mediation_session", {"outcome": "agreement", "notes": "双方同意分两期支付"}),
                         ("record_judicial_confirmation", {"applied": "false"}),
                         ("record_performance", {"performed": "true"})):
        details = page.locator(f"details[data-action={action}]")
        await details.locator("summary").click()
        for name, value in fill.items():
            target = details.locator(f"[name='{name}']")
            if await target.evaluate("e => e.tagName") == "SELECT":
                await target.select_option(value)
            else:
                await target.fill(value)
        await page.get_by_test_id(f"do-{action}").click()
        if action != "record_performance":
            await expect(page.get_by_test_id("notice")).to_have_text("已办理。")
    # Performed: the case went to follow-up, out of the mediator's hands (back to the inbox).
    record = await console.projected(case_id, lambda r: r.stage == "follow_up")
    assert record.stage == "follow_up"
    await shot(page, "mediator", "4-after-performance")
    await context.close()
    assert console.left == []


async def test_supervisor_board_shows_a_new_breach_without_reload(console: Console) -> None:
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, "sup-1")
    await expect(page.locator("h1")).to_have_text("督办看板")
    await page.evaluate("window.__sameDocument = true")
    await accessible(page, "board")
    await shot(page, "supervisor", "1-board")

    # An emergency case registered now; its hour passes (the breach escalates it, ending that clock),
    # then the escalation's four hours: that breach stays open, for the board.
    token = issue_token(console.settings, user_id="op-1", role="operator", region="370102")
    description = f"邻居扬言动手 {uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=console.origin) as http:
        answer = await http.post("/cases", headers={"Authorization": f"Bearer {token}"}, json={
            "channel": "walk_in", "caller": {"name": "王五", "phone": "13912345678"}, "region_code": "370102",
            "category": "dispute", "dispute_type": "neighbours", "urgency": "emergency", "description": description})
    assert answer.status_code == 201, answer.text
    case_id = answer.json()["case_id"]
    await console.projected(case_id)
    assert await page.locator(f"[data-testid=breaches] tr[data-case='{case_id}']").count() == 0
    await console.env.sleep(timedelta(hours=5, minutes=2))
    for _ in range(200):  # the breach reaches the read model...
        with Session(console.engine) as session:
            if session.exec(select(func.count()).select_from(ClockRecord).where(
                    ClockRecord.case_id == case_id, ClockRecord.breached,
                    ClockRecord.status.in_(("running", "paused")))).one():
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the breach was not projected")
    # ...and the open board shows it within 2 s, without a reload.
    await expect(page.locator(f"[data-testid=breaches] tr[data-case='{case_id}']")).to_be_visible(timeout=2_000)
    assert await page.evaluate("window.__sameDocument") is True
    await expect(page.locator(f"[data-testid=breaches] tr[data-case='{case_id}']")).to_contain_text("上报处理")
    await chinese_only(page, "board")
    await shot(page, "supervisor", "2-breach-appeared")

    # Someone asks to extend the escalation's deadline; the supervisor finds the request in the
    # inbox and approves it on the case page.
    with Session(console.engine) as session:
        clock = session.exec(select(ClockRecord).where(ClockRecord.case_id == case_id,
                                                       ClockRecord.status == "running")).first()
    assert clock is not None
    async with httpx.AsyncClient(base_url=console.origin) as http:
        asked = await http.post(f"/cases/{case_id}/actions/request_extension",
                                headers={"Authorization": f"Bearer {token}"},
                                json={"clock_id": clock.clock_id.split(":", 1)[1], "reason": "当事人住院",
                                      "by": {"amount": 2, "unit": "calendar_hours"}})
    assert asked.status_code == 200, asked.text
    await page.goto(f"{console.origin}/console/inbox")
    await chinese_only(page, "inbox (supervisor)")
    await page.locator(f"tr[data-case='{case_id}']").filter(has_text="审批延期申请：上报处理").get_by_role("link").click()
    await expect(page.get_by_test_id("extension-requests")).to_contain_text("当事人住院")
    await expect(page.get_by_test_id("extension-requests")).to_contain_text("2 小时")
    await chinese_only(page, "case page with an extension request")
    decide = page.locator("details[data-action=decide_extension]")
    await decide.locator("summary").click()
    await decide.locator("[name='approve']").select_option("true")
    await decide.locator("[name='reason']").fill("情况属实")
    await accessible(page, "case page (supervisor)")
    await page.get_by_test_id("do-decide_extension").click()
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。")
    await expect(page.get_by_test_id("extension-requests")).to_have_count(0)
    await shot(page, "supervisor", "3-extension-approved")

    await page.goto(f"{console.origin}/console/board")
    csv = await page.request.get(f"{console.origin}/console/board/compliance.csv")
    assert csv.status == 200 and (await csv.text()).startswith("clock,region_code,period,")
    assert page.locator("figure.chart svg") is not None

    # The operator's case in follow-up: the supervisor records the return visit, closing it.
    case = CARRIED.case_id
    await page.goto(f"{console.origin}/console/cases/{case}")
    details = page.locator("details[data-action=record_return_visit]")
    await details.locator("summary").click()
    await details.locator("[name='satisfaction']").fill("5")
    await page.get_by_test_id("do-record_return_visit").click()
    await expect(page.get_by_test_id("stage")).to_have_text("已结案")
    await expect(page.get_by_test_id("no-actions")).to_be_visible()
    await shot(page, "supervisor", "4-closed")
    await context.close()
    assert console.left == []


async def test_supervisor_runs_a_small_forecast_and_sees_the_chart(console: Console) -> None:
    """The forecast page: the form (an error beside its field, everything typed kept), the job's
    progress, then a chart of compliance against staffing level per clock with its table."""
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, "sup-1")
    await page.get_by_role("link", name="人员预测").click()
    await expect(page.locator("h1")).to_have_text("人员配置预测")
    await accessible(page, "forecast form")
    await page.locator("#f-region").fill("370102")
    await page.locator("#f-start").fill("2027-03-01")
    await page.locator("#f-weeks").fill("1")
    await page.locator("#f-runs").fill("1")
    await page.locator("#f-staff_mediator_per_day").fill("2")
    await page.locator("#f-sweep_levels").fill("one and three")
    await page.locator("#f-arrivals-given").check()
    await page.locator("#f-arrivals").fill("dispute:labour_wages=12\nconsultation:other=6")
    await page.get_by_test_id("run-forecast").click()
    await expect(page.get_by_test_id("error-sweep_levels")).to_have_text("请写成 2-6 或 2,3,5。")
    assert await page.locator("#f-sweep_levels").get_attribute("aria-invalid") == "true"
    await expect(page.locator("#f-arrivals")).to_have_value("dispute:labour_wages=12\nconsultation:other=6")
    await expect(page.locator("#f-staff_mediator_per_day")).to_have_value("2")
    await shot(page, "supervisor", "5-forecast-form-error")

    await page.locator("#f-sweep_levels").fill("1,3")
    await page.get_by_test_id("run-forecast").click()
    await expect(page.locator("h1")).to_have_text("预测结果")
    assert re.search(r"/console/forecast/[0-9a-f]{32}$", page.url)
    # The progress while it runs (each second), then the page again with the result.
    chart = page.get_by_test_id("forecast-chart-triage_response")
    await expect(chart.locator("svg[role=img]")).to_be_visible(timeout=180_000)
    await expect(page.get_by_test_id("forecast-status")).to_have_attribute("data-status", "done")
    levels = await chart.locator("tbody tr td:first-child").all_text_contents()
    assert levels == ["1", "3"]
    assert await chart.locator("svg rect").count() == 2  # a bar per staffing level
    assert await chart.locator("svg line.target").count() == 1
    await expect(page.get_by_test_id("forecast-chart-mediation_conclusion")).to_be_visible()
    await expect(page.get_by_test_id("forecast-backlog").locator("tbody tr")).to_have_count(2)
    # Its notes in Chinese, as the rest of the page (the API says them in English).
    notes = page.get_by_test_id("forecast-notes").locator("li")
    await expect(notes.first).to_have_text("每档人数运行 1 次；同一次运行在各档人数下的来案相同")
    said = await notes.all_text_contents()
    assert len(said) >= 3 and not any(re.search(r"[A-Za-z]{3,}", note) for note in said), said
    await accessible(page, "forecast result")
    await shot(page, "supervisor", "6-forecast-result")

    # Another supervisor's forecast answers 404; a mediator may not use the page at all.
    job_url = page.url
    await context.close()
    other_context = await console.context()
    other = await other_context.new_page()
    await sign_in(other, console, "sup-bj")
    answer = await other.goto(job_url)
    assert answer is not None and answer.status == 404
    await other_context.close()
    mediator_context = await console.context()
    mediator = await mediator_context.new_page()
    await sign_in(mediator, console, "med-370102-01")
    answer = await mediator.goto(f"{console.origin}/console/forecast")
    assert answer is not None and answer.status == 403
    answer = await mediator.goto(job_url)
    assert answer is not None and answer.status == 403
    await mediator_context.close()
    assert console.left == []


async def test_auditor_reads_the_story_checks_the_chain_and_replays(console: Console) -> None:
    case_id = CARRIED.case_id
    await console.projected(case_id, lambda r: r.closed_at is not None)
    context = await console.context()
    page = await context.new_page()
    await sign_in(page, console, "aud-1")
    await page.goto(f"{console.origin}/console/cases/{case_id}")
    await expect(page.get_by_test_id("no-actions")).to_be_visible()  # auditors read; they never act
    await page.get_by_role("link", name="审计：经过、哈希链与重放").click()
    await expect(page.get_by_test_id("chain-result")).to_contain_text("一致")
    story = page.get_by_test_id("story")
    await expect(story).to_contain_text("张晓燕")  # the operator, by name
    await expect(story).to_contain_text("记录调解情况：达成协议（双方同意分两期支付）")
    await chinese_only(page, "audit page")
    # Who was shown the caller's data: the operator and the mediator opened the case page.
    reads = page.get_by_test_id("reads")
    await expect(reads.locator("tr[data-reader='op-1']").first).to_contain_text("GET /console/cases/{case_id}")
    await expect(reads.locator(f"tr[data-reader='{CARRIED.mediator}']").first).to_contain_text("姓名, 电话")
    await expect(reads.locator("tr[data-reader='op-1']").first).to_contain_text("接线员")
    href = await page.get_by_test_id("temporal-ui").get_attribute("href")
    assert href and href.endswith(f"/workflows/case-{case_id}")
    history = await page.request.get(f"{console.origin}/console/cases/{case_id}/history.json")
    assert history.status == 200 and '"events"' in await history.text()
    # Reading the story and downloading the history are reads of the case, in the read log as the API's.
    with Session(console.engine) as session:
        mine = session.exec(select(CallerDataRead).where(CallerDataRead.case_id == case_id,
                                                         CallerDataRead.user_id == "aud-1")).all()
    assert {(r.kind, r.route) for r in mine} >= {("timeline", "GET /console/cases/{case_id}/audit"),
                                                 ("history", "GET /console/cases/{case_id}/history.json")}
    await accessible(page, "audit page")
    await page.get_by_test_id("replay").click()
    await expect(page.get_by_test_id("replay-result")).to_contain_text("重放通过")
    await shot(page, "auditor", "1-audit")

    # English on request, from the catalogue.
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("h1")).to_have_text(f"Audit of case {case_id}")
    await expect(page.get_by_test_id("reads").locator("tr[data-reader='op-1']").first).to_contain_text("name, phone")
    await context.close()
    assert console.left == []


# -- Keyboard alone ----------------------------------------------------------------------------------

FOCUSED = """() => {
    const e = document.activeElement;
    if (!e || e === document.body) return null;
    const s = getComputedStyle(e);
    const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) || (s.boxShadow || 'none') !== 'none';
    const box = e.getBoundingClientRect();
    return {what: e.tagName + (e.id ? '#' + e.id : '') + (e.name ? '[' + e.name + ']' : '') + ' ' +
                  (e.textContent || '').trim().slice(0, 30) + ' ' + location.pathname, ring: ring,
            shown: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0};
}"""


async def tab_to(page: Page, selector: str, *, back: bool = False, limit: int = 200) -> None:
    """Tab (or Shift+Tab) until `selector` has the focus; every element passed on the way shows
    that it has it (a visible ring, on screen)."""
    key = "Shift+Tab" if back else "Tab"
    await page.wait_for_load_state("load")  # the stylesheet applied, as a person would see the page
    for _ in range(limit):
        await page.keyboard.press(key)
        focused = await page.evaluate(FOCUSED)
        if focused is not None:
            assert focused["ring"] and focused["shown"], f"focus not visible on {focused}"
        if await page.evaluate("s => document.activeElement !== null && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached with {key}")


async def test_every_form_by_keyboard_alone(console: Console) -> None:
    """Sign-in, intake, action forms, the board's filter, an extension decision and a reassignment,
    sign-out: Tab, Shift+Tab, Enter, Space and the arrow keys only, with the focus always visible."""
    context = await console.context()
    page = await context.new_page()
    await page.goto(f"{console.origin}/console/signin")
    await tab_to(page, "[data-testid=signin-op-1]")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("登记来电")

    # Intake: text, a select by the arrow keys, a special group by Space, sent with Enter.
    description = f"键盘登记 {uuid.uuid4().hex[:8]}"
    await tab_to(page, "#caller-name")
    await page.keyboard.type("赵六")
    await page.keyboard.press("Tab")
    await page.keyboard.type(f"1390{uuid.uuid4().int % 10**7:07d}")
    await tab_to(page, "#dispute-type")
    await page.keyboard.press("ArrowUp")
    assert await page.locator("#dispute-type").input_value() != "other"
    await tab_to(page, "#g-migrant_worker")
    await page.keyboard.press("Space")
    await expect(page.locator("#g-migrant_worker")).to_be_checked()
    await tab_to(page, "#description")
    await page.keyboard.type(description)
    await tab_to(page, "[data-testid=register]")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text(re.compile(r"案件 370102-\d{8}-\d{4}"), timeout=TIMEOUT_MS)
    case_id = (await page.locator("h1").text_content() or "").split()[-1]
    assert [c.case_id for c in console.cases_described(description)] == [case_id]

    # An action form: opened with Enter on its summary, sent with Space on its button.
    await tab_to(page, "details[data-action=send_to_mediation] summary")
    await page.keyboard.press("Enter")
    await expect(page.locator("details[data-action=send_to_mediation]")).to_have_attribute("open", "")
    await tab_to(page, "[data-testid=do-send_to_mediation]")
    await page.keyboard.press("Space")
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("mediator")).to_contain_text("med-370102")

    # A form with a select, a number and a text: ask for more time for mediation.
    await tab_to(page, "details[data-action=request_extension] summary")
    await page.keyboard.press("Enter")
    await tab_to(page, "details[data-action=request_extension] [name='by.amount']")
    await page.keyboard.type("3")
    await page.keyboard.press("Tab")
    await page.keyboard.press("ArrowDown")  # calendar hours -> calendar days
    await expect(page.locator("details[data-action=request_extension] [name='by.unit']")).to_have_value("calendar_days")
    await page.keyboard.press("Tab")
    await page.keyboard.type("当事人外出务工")
    await tab_to(page, "[data-testid=do-request_extension]")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("extension-requests")).to_contain_text("3 自然日")

    # Sign out: back up to the header with Shift+Tab.
    await tab_to(page, "form[action$='/signout'] button", back=True)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("登录")

    # The supervisor: the board's filter, then the request from the inbox, decided; the mediator reassigned.
    await tab_to(page, "[data-testid=signin-sup-1]")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("督办看板")
    await tab_to(page, "#b-region")
    await page.keyboard.type("370102")
    await tab_to(page, "#b-stage")
    await page.keyboard.press("ArrowDown")  # the first stage
    await tab_to(page, "#board-filters button[type=submit]")
    await page.keyboard.press("Enter")
    await expect(page.locator("#b-region")).to_have_value("370102")
    assert "region=370102" in page.url
    await tab_to(page, "nav a[href$='/inbox']", back=True)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("我的待办")
    await tab_to(page, f"tr[data-case='{case_id}'] a")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text(f"案件 {case_id}")
    await tab_to(page, "details[data-action=decide_extension] summary")
    await page.keyboard.press("Enter")
    await tab_to(page, "details[data-action=decide_extension] [name='approve']")
    await page.keyboard.press("ArrowDown")  # choose -> yes
    await expect(page.locator("details[data-action=decide_extension] [name='approve']")).to_have_value("true")
    await page.keyboard.press("Tab")
    await page.keyboard.type("同意延期")
    await tab_to(page, "[data-testid=do-decide_extension]")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("extension-requests")).to_have_count(0)

    mediator = re.search(r"med-370102-\d\d", await page.get_by_test_id("mediator").text_content() or "").group(0)
    other = "med-370102-02" if mediator != "med-370102-02" else "med-370102-01"
    await tab_to(page, "details[data-action=reassign_mediator] summary")
    await page.keyboard.press("Enter")
    await tab_to(page, "details[data-action=reassign_mediator] [name='mediator_id']")
    await page.keyboard.type(other)
    await page.keyboard.press("Tab")
    await page.keyboard.type("原调解员休假")
    await tab_to(page, "[data-testid=do-reassign_mediator]")
    await page.keyboard.press("Space")
    await expect(page.get_by_test_id("notice")).to_have_text("已办理。", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("mediator")).to_contain_text(other)
    await shot(page, "keyboard", "1-reassigned")

    await tab_to(page, "form[action$='/signout'] button", back=True)
    await page.keyboard.press("Space")
    await expect(page.locator("h1")).to_have_text("登录")
    await context.close()
    assert console.left == []
