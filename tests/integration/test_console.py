"""The web console in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against a live data directory: a
producer keeps writing and a consumer group member lags behind.

Every test waits for page conditions (WebDriverWait), never for time. A
screenshot of each screen is saved (to ``$ARROWLOG_SCREENSHOTS_DIR`` when
set, e.g. ``docs/images`` to refresh docs/OPERATIONS.md; else a temporary
directory).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

pytest.importorskip("flask")
webdriver = pytest.importorskip("selenium.webdriver")

import pyarrow.compute as pc  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from arrowlog import Consumer, LogDir, Producer, murmur2_partition, replay  # noqa: E402
from arrowlog.console import create_app  # noqa: E402
from arrowlog.console.serving import ConsoleHTTP  # noqa: E402
from arrowlog.groups.admin import GroupAdmin  # noqa: E402

WAIT_S = 60.0
ORDERS = 300
STEP_MS = 2000                          # orders are stamped 2 s apart: ten minutes of them
EVIL = "<script>window.__pwned = 1; alert('pwned')</script>"


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name in names:
            if shutil.which(name):
                return shutil.which(name)
    pytest.fail(f"{names[0]} is not installed: run `make system-deps` (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = os.environ.get("ARROWLOG_SCREENSHOTS_DIR") or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def base_ms():
    """The first order's timestamp: ten minutes before the fixtures write them, so the newest
    is stamped "now". Taken when the data is written, not when the module is imported (a full
    run imports it long before, and the produce-rate chart only shows the last 15 minutes)."""
    return int(time.time() * 1000) - ORDERS * STEP_MS


@pytest.fixture(scope="module")
def live(tmp_path_factory, base_ms):
    """A data directory with topics ``orders`` (3 partitions, JSON values, headers,
    one ``<script>`` value) and ``clicks`` (written to all along), a group
    ``billing`` with a live member that read 60 records and stopped, and a group
    ``archive`` with offsets and no members."""
    data = str(tmp_path_factory.mktemp("console") / "data")
    with Producer({"log.dir": data, "num.partitions": 3, "linger.ms": 0}) as p:
        for i in range(ORDERS):
            p.produce("orders", key=f"customer-{i % 25}".encode(),
                      value=f'{{"order": {i}, "amount": {i * 3}}}'.encode(),
                      headers=[("source", b"web"), ("trace", f"t-{i}".encode())],
                      timestamp=base_ms + i * STEP_MS)
        p.produce("orders", key=b"evil", value=EVIL.encode(), headers=[("x", EVIL.encode())],
                  timestamp=base_ms + ORDERS * STEP_MS)
        p.flush()
    stop = threading.Event()

    def produce_clicks():
        with Producer({"log.dir": data, "num.partitions": 1, "linger.ms": 0}) as p:
            i = 0
            while not stop.wait(0.02):
                p.produce("clicks", value=f"click {i}".encode())
                p.flush()
                i += 1

    producer = threading.Thread(target=produce_clicks, daemon=True)
    producer.start()
    with LogDir(data) as log:
        deadline = time.monotonic() + WAIT_S
        while not (log.has_topic("clicks") and log.topic("clicks").partition(0).high_watermark > 0):
            assert time.monotonic() < deadline, "the clicks producer wrote nothing"
            time.sleep(0.02)
    member = Consumer({"log.dir": data, "group.id": "billing", "auto.offset.reset": "earliest",
                       "enable.auto.commit": False, "client.id": "billing-worker"})
    member.subscribe(["orders"])
    got = 0
    deadline = time.monotonic() + WAIT_S
    while got < 60:
        assert time.monotonic() < deadline, "the group member did not read 60 records"
        got += len(member.consume(60 - got, timeout=1.0))
    member.commit(asynchronous=False)
    with GroupAdmin(data) as admin:
        admin.commit("archive", {("orders", 0): 5, ("orders", 1): 5, ("orders", 2): 5})
    yield data
    stop.set()
    producer.join(WAIT_S)
    member.close()


@pytest.fixture(scope="module")
def console(live):
    http = ConsoleHTTP(create_app(live, allow_writes=True), "127.0.0.1", 0)
    yield http
    http.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(_binary("chromedriver")), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def wait(driver, condition):
    """Until ``condition`` holds; elements of the page being replaced are looked up again."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def open_page(driver, url: str, ready: str):
    driver.get(url)
    return wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, ready)))


def shown_offsets(driver) -> list[int]:
    return [int(td.text) for td in driver.find_elements(By.CSS_SELECTOR, "#records tr.record td.offset")]


def orders_table(live):
    with LogDir(live) as log:
        return replay(log, "orders").to_arrow()


def test_topics_screen(browser, console, live, shots):
    open_page(browser, console.url, "#topics")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-topic="orders"]')
    assert int(row.find_element(By.CSS_SELECTOR, "td.records").text) == ORDERS + 1
    # produce rate: one bar per minute of the last 15; the records stamped in that window
    bars = row.find_elements(By.CSS_SELECTOR, "svg.rate rect")
    assert len(bars) == 15
    counts = [int(b.find_element(By.TAG_NAME, "title").get_attribute("textContent").split()[0]) for b in bars]
    assert sum(counts) == ORDERS + 1
    clicks = browser.find_element(By.CSS_SELECTOR, 'tr[data-topic="clicks"]')
    assert int(clicks.find_element(By.CSS_SELECTOR, "td.records").text) > 0
    browser.save_screenshot(os.path.join(shots, "console-topics.png"))


def test_browse_by_offset_and_page_forward_and_back(browser, console, live, shots):
    open_page(browser, console.url + "topics/orders?partition=1&offset=10&rows=5", "#records")
    assert shown_offsets(browser) == [10, 11, 12, 13, 14]
    browser.find_element(By.ID, "next").click()
    wait(browser, lambda d: shown_offsets(d) == [15, 16, 17, 18, 19])
    browser.find_element(By.ID, "prev").click()
    wait(browser, lambda d: shown_offsets(d) == [10, 11, 12, 13, 14])
    table = orders_table(live).filter(pc.equal(pc.field("partition"), 1))
    first = browser.find_element(By.CSS_SELECTOR, "#records tr.record")
    expected = table.filter(pc.equal(table["offset"], 10)).to_pylist()[0]
    value_text = first.find_element(By.CSS_SELECTOR, "td.value pre").text
    assert value_text.replace("\n", "").replace(" ", "") == expected["value"].decode().replace(" ", "")
    assert "json" in first.find_element(By.CSS_SELECTOR, "td.value pre").get_attribute("class")
    headers = first.find_element(By.CSS_SELECTOR, "td.headers").text
    assert "source" in headers and "web" in headers and "trace" in headers
    browser.save_screenshot(os.path.join(shots, "console-messages.png"))


def test_seek_by_time_goes_through_the_time_index(browser, console, live, base_ms):
    target_ms = base_ms + 123 * STEP_MS + 500   # between two records' timestamps
    when = dt.datetime.fromtimestamp(target_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    open_page(browser, console.url + "topics/orders", "#records")
    Select(browser.find_element(By.ID, "mode")).select_by_value("time")
    Select(browser.find_element(By.ID, "partition")).select_by_visible_text("2")
    browser.find_element(By.ID, "time").clear()
    browser.find_element(By.ID, "time").send_keys(when)
    browser.find_element(By.ID, "seek").click()
    wait(browser, EC.presence_of_element_located((By.ID, "note")))
    # the answer a full scan gives: the first record of partition 2 stamped at or after target
    table = orders_table(live).filter(pc.equal(pc.field("partition"), 2)).to_pylist()
    expected = min(r["offset"] for r in table if r["timestamp"].timestamp() * 1000 >= target_ms)
    assert shown_offsets(browser)[0] == expected
    assert f"offset {expected}" in browser.find_element(By.ID, "note").text


def test_key_search_routes_by_murmur2_and_equals_a_full_scan(browser, console, live, shots):
    key = "customer-7"
    open_page(browser, console.url + "topics/orders", "#records")   # the newest page of partition 0
    Select(browser.find_element(By.ID, "mode")).select_by_value("key")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "seek").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "note"), "murmur2"))
    partition = murmur2_partition(key.encode(), 3)
    assert f"partition {partition}" in browser.find_element(By.ID, "note").text
    table = orders_table(live)
    everywhere = table.filter(pc.equal(table["key"], key.encode())).to_pylist()
    assert {r["partition"] for r in everywhere} == {partition}
    assert shown_offsets(browser) == [r["offset"] for r in everywhere]
    keys = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#records td.key pre")}
    assert keys == {key}
    browser.save_screenshot(os.path.join(shots, "console-key-search.png"))
    # paging through the matches five at a time finds the same records
    open_page(browser, console.url + f"topics/orders?mode=key&key={key}&rows=5", "#records")
    pages = [shown_offsets(browser)]
    while browser.find_elements(By.ID, "next"):
        browser.find_element(By.ID, "next").click()
        wait(browser, lambda d: d.find_elements(By.ID, "note") and shown_offsets(d) != pages[-1])
        pages.append(shown_offsets(browser))
    assert [len(p) for p in pages[:-1]] == [5] * (len(pages) - 1)
    assert sum(pages, []) == [r["offset"] for r in everywhere]


def test_script_value_renders_as_text(browser, console, live):
    table = orders_table(live)
    evil = table.filter(pc.equal(table["key"], b"evil")).to_pylist()[0]
    open_page(browser, console.url + f"topics/orders?partition={evil['partition']}&offset={evil['offset']}&rows=1",
              "#records tr.record")
    row = browser.find_element(By.CSS_SELECTOR, "#records tr.record")
    assert row.find_element(By.CSS_SELECTOR, "td.value pre").text == EVIL
    assert EVIL in row.find_element(By.CSS_SELECTOR, "td.headers").text
    assert browser.execute_script("return window.__pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert "&lt;script&gt;" in browser.page_source


def test_groups_show_members_assignment_and_lag(browser, console, live, shots):
    open_page(browser, console.url + "groups", "#groups")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-group="billing"]')
    with GroupAdmin(live) as admin:
        desc = admin.describe("billing")
    assert desc.members and sum(p.committed or 0 for p in desc.partitions) == 60
    assert int(row.find_element(By.CSS_SELECTOR, "td.lag").text) == desc.total_lag
    browser.save_screenshot(os.path.join(shots, "console-groups.png"))
    row.find_element(By.TAG_NAME, "a").click()
    wait(browser, EC.presence_of_element_located((By.ID, "partitions")))
    members = browser.find_element(By.ID, "members").text
    assert "billing-worker" in members and "orders-0" in members
    for p in desc.partitions:
        tr = browser.find_element(By.CSS_SELECTOR, f'tr[data-tp="orders-{p.partition}"]')
        hwm = int(tr.find_element(By.CSS_SELECTOR, "td.hwm").text)
        committed = tr.find_element(By.CSS_SELECTOR, "td.committed").text
        if committed == "-":
            continue
        assert int(tr.find_element(By.CSS_SELECTOR, "td.lag").text) == hwm - int(committed)
        if hwm > int(committed):   # its oldest unread record was stamped minutes ago
            assert float(tr.find_element(By.CSS_SELECTOR, "td.lag-seconds").text) > 60
    browser.save_screenshot(os.path.join(shots, "console-group.png"))


def test_offset_reset_dry_run_then_apply(browser, console, live, shots):
    open_page(browser, console.url + "groups/archive", "#reset-form")
    Select(browser.find_element(By.ID, "reset-to")).select_by_visible_text("offset")
    browser.find_element(By.ID, "reset-value").send_keys("50")
    browser.find_element(By.ID, "dry-run").click()
    wait(browser, EC.presence_of_element_located((By.ID, "plan")))
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#plan td.new")] == ["50", "50", "50"]
    with GroupAdmin(live) as admin:
        assert set(admin.committed("archive").values()) == {5}   # a dry run changes nothing
    browser.save_screenshot(os.path.join(shots, "console-reset.png"))
    browser.find_element(By.ID, "execute").click()
    wait(browser, EC.presence_of_element_located((By.ID, "applied")))
    with GroupAdmin(live) as admin:
        assert set(admin.committed("archive").values()) == {50}


def test_write_without_csrf_token_is_refused(browser, console, live):
    open_page(browser, console.url + "groups/archive", "#reset-form")
    Select(browser.find_element(By.ID, "reset-to")).select_by_visible_text("earliest")
    browser.execute_script("document.querySelector('#reset-form input[name=csrf_token]').remove()")
    browser.find_element(By.ID, "execute").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "error"), "CSRF"))
    with GroupAdmin(live) as admin:
        assert 0 not in set(admin.committed("archive").values())


@pytest.mark.parametrize("query, error", [
    ("select * from read_csv('/etc/passwd')", "disabled by configuration"),
    ("COPY (select 1) TO '/tmp/arrowlog-console-copy.csv'", "COPY is refused"),
    ("ATTACH ':memory:' AS other", "ATTACH is refused"),
    ("INSTALL httpfs", "is refused"),
])
def test_sql_refuses_external_access(browser, console, query, error):
    open_page(browser, console.url + "sql", "#query")
    browser.find_element(By.ID, "query").send_keys(query)
    browser.find_element(By.ID, "run").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "sql-error"), error))
    assert not os.path.exists("/tmp/arrowlog-console-copy.csv")


def test_sql_runs_over_topics(browser, console, live, shots):
    open_page(browser, console.url + "sql", "#query")
    browser.find_element(By.ID, "query").send_keys(
        'select partition, count(*) as records, max("offset") as last from orders group by partition order by 1')
    browser.find_element(By.ID, "run").click()
    wait(browser, EC.presence_of_element_located((By.ID, "sql-result")))
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#sql-result tbody tr")]
    table = orders_table(live)
    expected = [[str(p), str(pc.sum(pc.equal(table["partition"], p)).as_py()),
                 str(pc.max(table.filter(pc.equal(table["partition"], p))["offset"]).as_py())] for p in range(3)]
    assert rows == expected
    browser.save_screenshot(os.path.join(shots, "console-sql.png"))


def test_read_only_console_refuses_writes(live):
    app = create_app(live)
    client = app.test_client()
    page = client.get("/groups/archive").data.decode()
    assert "reset-form" not in page and "--allow-writes" in page
    with client.session_transaction() as s:
        s["csrf"] = "token"
    r = client.post("/groups/archive/reset", data={"to": "earliest", "action": "execute", "csrf_token": "token"})
    assert r.status_code == 403 and b"read-only" in r.data


def test_sql_time_and_row_limits(live):
    from arrowlog.console.sql import SqlError, run_query

    with LogDir(live) as log:
        result = run_query(log, "select * from range(5000)", row_limit=10)
        assert len(result.rows) == 10 and result.truncated
        started = time.monotonic()
        with pytest.raises(SqlError, match="interrupted"):
            run_query(log, "select sum(hash(i)) from range(1000000000000) t(i)", time_limit_s=0.5)
        assert time.monotonic() - started < WAIT_S
        with pytest.raises(SqlError, match="one statement"):
            run_query(log, "select 1; select 2")


def test_arrowlog_console_command_serves_the_directory(live):
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "arrowlog", "--data", live, "console", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), proc.stderr.read()
        with urllib.request.urlopen(f"http://{address}/groups", timeout=30) as r:
            page = r.read().decode()
        assert 'data-group="billing"' in page and "read-only" in page
    finally:
        proc.terminate()
        proc.wait(30)


def test_typed_and_binary_values_are_decoded(tmp_path):
    import pyarrow as pa

    data = str(tmp_path / "data")
    with LogDir(data) as d:
        t = d.create_topic("typed", partitions=1, config={"value.schema": pa.schema([("x", pa.int64()),
                                                                                     ("name", pa.string())])})
        t.partition(0).append(pa.RecordBatch.from_pydict({
            "timestamp": pa.array([1_700_000_000_000], pa.timestamp("ms")), "key": pa.array([b"\xff\x00"]),
            "value": pa.array([{"x": 42, "name": "<b>bold</b>"}], pa.struct([("x", pa.int64()),
                                                                              ("name", pa.string())])),
            "headers": pa.nulls(1, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))}))
    page = create_app(data).test_client().get("/topics/typed?offset=0").data.decode()
    value = page.split('class="v typed">', 1)[1].split("</pre>", 1)[0]
    assert json.loads(html.unescape(value)) == {"x": 42, "name": "<b>bold</b>"}
    assert "&lt;b&gt;bold" in value
    assert 'class="v binary">ff 00</pre>' in page


def test_login_uses_the_servers_scram_users(tmp_path):
    import base64

    from arrowlog.console.login import needs_login
    from arrowlog.errors import ConfigError
    from arrowlog.server.security.scram import make_credential
    from arrowlog.server.security.store import CredentialStore

    data = str(tmp_path / "data")
    LogDir(data).close()
    with pytest.raises(ConfigError, match="arrowlog user add"):
        create_app(data, login=True)    # nobody could log in
    CredentialStore(data).upsert("alice", "SCRAM-SHA-256", make_credential("SCRAM-SHA-256", "s3cret pw"))
    client = create_app(data, login=True).test_client()

    def basic(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    r = client.get("/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert client.get("/", headers=basic("alice", "wrong")).status_code == 401
    assert client.get("/", headers=basic("mallory", "s3cret pw")).status_code == 401
    assert client.get("/", headers=basic("alice", "s3cret pw")).status_code == 200
    assert client.get("/groups").status_code == 200    # the session remembers the login
    assert needs_login("0.0.0.0", None) and not needs_login("127.0.0.1", None)
    assert needs_login("127.0.0.1", True) and not needs_login("0.0.0.0", False)


def test_consumer_protocol_decoding_takes_hostile_bytes():
    import struct

    from arrowlog.console.browse import decode_assignment, decode_subscription

    def s(text):
        return struct.pack(">h", len(text)) + text.encode()

    sub = struct.pack(">hi", 1, 2) + s("a") + s("b") + struct.pack(">i", -1)
    assert decode_subscription(sub) == ["a", "b"]
    assign = struct.pack(">hi", 0, 1) + s("a") + struct.pack(">iii", 2, 1, 0) + struct.pack(">i", -1)
    assert decode_assignment(assign) == [("a", 0), ("a", 1)]
    for junk in (b"", b"\x00", b"\x00\x00\x7f\xff\xff\xff", sub[:-7], b"\xff" * 64):
        assert decode_subscription(junk) == []
        assert decode_assignment(junk) == []


def test_a_loopback_console_answers_only_its_own_host_names(live):
    from arrowlog.console.login import loopback_names

    client = create_app(live, trusted_hosts=loopback_names("127.0.0.1")).test_client()
    assert client.get("/", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost:8080"}).status_code == 200
    assert client.get("/", headers={"Host": "rebound.attacker.example:8080"}).status_code == 400
    assert loopback_names("0.0.0.0") is None


def test_large_values_and_many_headers_are_cut(tmp_path):
    data = str(tmp_path / "data")
    big = "é" * 50_000                       # 100,000 bytes of two-byte characters
    with Producer({"log.dir": data}) as p:
        p.produce("big", key=b"k", value=big.encode(), headers=[(f"h{i}", b"x") for i in range(40)])
        p.flush()
    page = create_app(data).test_client().get("/topics/big?offset=0").data.decode()
    value = page.split('<td class="value">', 1)[1].split("</td>", 1)[0]
    assert 'class="v text"' in value and "(100000 bytes)" in value
    shown = value.split(">", 2)[1].split("</pre", 1)[0]
    assert set(shown) == {"é"} and len(shown.encode()) <= 4096
    assert page.count('class="header"') == 33 and "8 more headers" in page
