#!/usr/bin/env python3
"""The web chat page at / of `llmkit serve`, driven in headless Chromium (Debian's chromium and
chromium-driver, through PyPI selenium): the page loads the model name, a typed message gets a
reply that streams in (several chunks, rendered as they arrive), a second turn carries the whole
history and the system prompt, the Stop button ends a long reply and the server's running batch
drains back to zero. Screenshots go to ARTIFACT_DIR (default: the current directory) as
web_chat.png. Exit 77 (skipped) when selenium, chromium or the default model is missing.

usage: test_web_chat.py PATH/TO/llmkit [ARTIFACT_DIR]"""
import os
import shutil
import sys
import time
import urllib.request

from serve_testlib import SKIP, default_model, serve


def find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def main(llmkit: str, artifacts: str) -> int:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        print("skipped: selenium is not installed (pip install selenium)")
        return SKIP
    chromium = find("chromium", "chromium-browser", "google-chrome")
    driver_bin = find("chromedriver")
    if not chromium or not driver_bin:
        print("skipped: chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
        return SKIP
    model = default_model()
    if model is None:
        return SKIP

    driver = None
    with serve(llmkit, model, "-c", "1024", "-P", "2") as (base, _):
        try:
            opts = webdriver.ChromeOptions()
            opts.binary_location = chromium
            for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                      "--window-size=1100,800", "--no-first-run", "--disable-extensions"):
                opts.add_argument(a)
            driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
            driver.set_page_load_timeout(30)
            driver.get(base + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: "SmolLM2" in d.find_element(By.ID, "model").text)

            system = driver.find_element(By.ID, "system")
            system.clear()
            system.send_keys("You are a helpful assistant. Answer briefly.")
            driver.execute_script("document.getElementById('temperature').value = '0';"
                                  "document.getElementById('max_tokens').value = '48';")

            def ask(text):
                box = driver.find_element(By.ID, "input")
                box.send_keys(text)
                # While it streams, the text grows chunk by chunk; record what the page shows midway.
                # An observer in the page records every rendering as the DOM changes (polling from
                # here alone can miss a short reply that streams between two WebDriver round trips).
                driver.execute_script("""
                    window.__seen = [];
                    if (window.__obs) window.__obs.disconnect();
                    window.__obs = new MutationObserver(() => {
                      const msgs = document.querySelectorAll('.msg.assistant');
                      const last = msgs[msgs.length - 1];
                      if (last && last.getAttribute('data-state') === 'streaming' && last.firstChild)
                        window.__seen.push(last.firstChild.textContent);
                    });
                    window.__obs.observe(document.body, {subtree: true, childList: true, characterData: true,
                                                         attributes: true});""")
                driver.find_element(By.ID, "send").click()
                seen = set()
                deadline = time.time() + 120
                while time.time() < deadline:
                    msgs = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")
                    if msgs:
                        last = msgs[-1]
                        state = last.get_attribute("data-state")
                        if state == "streaming":
                            seen.add(driver.execute_script("return arguments[0].firstChild ? arguments[0].firstChild.textContent : ''", last))
                        if state in ("done", "error", "stopped"):
                            seen.update(driver.execute_script("return window.__seen || []"))
                            return last, state, seen
                    time.sleep(0.02)
                raise AssertionError("no finished reply within 120 s")

            last, state, seen = ask("What is the capital of France?")
            assert state == "done", (state, driver.find_element(By.ID, "log").text)
            chunks = int(last.get_attribute("data-chunks"))
            reply = driver.execute_script("return arguments[0].firstChild.textContent", last)
            assert reply.strip(), "empty reply"
            assert chunks > 1, f"the reply arrived in {chunks} chunk(s), not streamed"
            partial = [s for s in seen if s and s != reply]
            assert partial, "never saw a partial reply on the page while streaming"
            assert all(reply.startswith(p) for p in partial), (partial, reply)
            print(f"turn 1: {chunks} chunks, {len(partial)} partial renderings seen: {reply!r}")

            # Turn 2 carries the history: system, user, assistant, user.
            last2, state2, _ = ask("Name three colours.")
            assert state2 == "done", state2
            body = driver.execute_script("return window.llmkit.lastRequest")
            roles = [m["role"] for m in body["messages"]]
            assert roles == ["system", "user", "assistant", "user"], roles
            assert body["messages"][2]["content"] == reply
            assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 48
            assert len(driver.find_elements(By.CSS_SELECTOR, ".msg.user")) == 2

            os.makedirs(artifacts, exist_ok=True)
            shot = os.path.join(artifacts, "web_chat.png")
            driver.save_screenshot(shot)
            assert os.path.getsize(shot) > 10000, "screenshot too small"

            # Stop: a long reply is cut by the button; the server frees the sequence.
            driver.execute_script("document.getElementById('max_tokens').value = '400';")
            driver.find_element(By.ID, "input").send_keys("Write a long story about a lighthouse keeper.")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 60).until(
                lambda d: int(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].get_attribute("data-chunks")) >= 3)
            driver.find_element(By.ID, "stop").click()
            WebDriverWait(driver, 10).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].get_attribute("data-state") == "stopped")
            assert driver.find_element(By.ID, "send").is_enabled()
            deadline = time.time() + 10
            while metric(base, "llmkit_running_sequences") != 0 and time.time() < deadline:
                time.sleep(0.05)
            assert metric(base, "llmkit_running_sequences") == 0, "the stopped reply still runs on the server"
            assert metric(base, "llmkit_kv_cache_positions_used") == 0
            assert metric(base, "llmkit_kv_blocks_used") == 0  # every page back (free or cached)
            cancelled = [l for l in urllib.request.urlopen(base + "/metrics").read().decode().splitlines()
                         if l.startswith('llmkit_requests_total{reason="cancelled"}')]
            assert cancelled and float(cancelled[0].split()[1]) >= 1, cancelled
            print(f"ok: chat page in {os.path.basename(chromium)} "
                  f"{driver.capabilities.get('browserVersion', '?')}; screenshot {shot}")
            return 0
        finally:
            if driver is not None:
                driver.quit()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/bin/llmkit",
                  sys.argv[2] if len(sys.argv) > 2 else "."))
