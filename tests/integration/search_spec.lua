-- GET /v1/search over synced records: BM25 ranking with titles weighing
-- double, stemming and accents, snippets, one hit per record, filters,
-- clear errors for bad queries, and above all who sees what: only the
-- team's shared connections and one's own, and never a category one's
-- permissions hide (a member without financial never sees a financial
-- chunk, until an admin grants it).
local h = require "helper"
local S = require "sync_helper"

local LONG = {}
for i = 1, 60 do LONG[#LONG + 1] = "Paragraph " .. i .. " about logistics and shipping routes." end
LONG[#LONG + 1] = "At the very end: the kangaroo mascot and the kangaroos on the poster."

local PROJECTS = {
  {id = "p1", title = "Quarterly roadmap review",
   text = "We reviewed the roadmap for the quarter. The roadmap moves the mobile launch to May."},
  {id = "p2", title = "Standup notes", text = "The roadmap came up once. Mostly about hiring."},
  {id = "p3", title = "Hiring plan", text = "Two engineers and one designer; the budget was approved."},
  {id = "p4", title = "Logistics handbook", text = table.concat(LONG, " ")},
  {id = "p5", title = "Race day", text = "Running runners at the charity run by the river."},
  {id = "p6", title = "Team lunch", text = "Café crème and crêpes at the new place."},
}
local LEDGER = {
  {id = "l1", title = "Invoice INV-1001 Acme Corp",
   text = "Invoice for consulting on the roadmap, total 12,400 EUR, due 2024-06-30."},
  {id = "l2", title = "Payroll May", text = "Payroll for May: eight employees, salaries enclosed."},
}

describe("search", function()
  local fault, srv, ada, mo, zed, other, team_conn, mo_conn

  local function search(key, query)
    local status, body, text = S.get(srv, key, "/v1/search?" .. query)
    return status, body, text
  end

  local function ids(body)
    local out = {}
    for _, r in ipairs(body.results) do out[#out + 1] = r.external_id .. "@" .. r.connection_id end
    return out
  end

  setup(function()
    fault = h.start_fault()
    S.dataset(fault, "load", {set = "main"}, {items = PROJECTS})
    S.dataset(fault, "load", {set = "ledger"}, {items = LEDGER})
    srv = S.start(fault)
    ada = srv.key("ada", "acme", "admin")
    mo = srv.key("mo", "acme")
    zed = srv.key("zed", "acme")
    other = srv.key("oz", "globex", "admin")
    team_conn = S.connect(srv, ada, {scope = "team", label = "shared"})
    assert.are.equal("succeeded", S.run(srv, ada, team_conn, "items").status)
    assert.are.equal("succeeded", S.run(srv, ada, team_conn, "ledger").status)
    mo_conn = S.connect(srv, mo, {label = "mine"})
    assert.are.equal("succeeded", S.run(srv, mo, mo_conn, "items").status)
  end)

  teardown(function()
    srv.stop()
    fault.stop()
  end)

  it("ranks by BM25, titles first, with a snippet around the words", function()
    local status, body = search(ada, "q=roadmap")
    assert.are.equal(200, status)
    -- p1 has it in its title and twice in its text; of the two that say it
    -- once, the shorter text ranks higher.
    assert.are.same({"p1@" .. team_conn, "p2@" .. team_conn, "l1@" .. team_conn}, ids(body))
    assert.are.equal(3, body.count)
    local top = body.results[1]
    assert.are.equal("Quarterly roadmap review", top.title)
    assert.matches("%*%*roadmap%*%*", top.snippet)
    assert.are.equal("projects", top.doc_category)
    assert.are.equal("records_source", top.integration)
    assert.are.equal("item", top.kind)
    assert.are.equal("https://records.example/items/p1", top.url)
    assert.is_string(top.updated_at)
    assert.is_true(top.score > body.results[2].score and body.results[2].score > body.results[3].score)
  end)

  it("stems, folds accents, finds prefixes, and lists a record once however many chunks match", function()
    local _, body = search(ada, "q=run")
    assert.are.same({"p5@" .. team_conn}, ids(body))
    _, body = search(ada, "q=cafe%20creme")
    assert.are.same({"p6@" .. team_conn}, ids(body))
    _, body = search(ada, "q=kanga*")
    assert.are.same({"p4@" .. team_conn}, ids(body))
    assert.matches("%*%*kangaroo", body.results[1].snippet)
    -- p4's text spans several chunks; "logistics" is in many of them.
    local chunks = h.sql(srv.data, "SELECT count(*) FROM document_chunks c JOIN records r ON r.id = c.record_id" ..
                                   " WHERE r.external_id = 'p4' AND r.connection_id = '" .. team_conn .. "'")
    assert.is_true(tonumber(chunks[1][1]) >= 3)
    _, body = search(ada, "q=logistics")
    assert.are.same({"p4@" .. team_conn}, ids(body))
    -- Every word is required; OR makes either enough.
    _, body = search(ada, "q=roadmap%20hiring")
    assert.are.same({"p2@" .. team_conn}, ids(body))
    _, body = search(ada, "q=designer%20OR%20kangaroo")
    assert.are.equal(2, body.count)
  end)

  it("filters by category, integration and limit", function()
    local _, body = search(ada, "q=roadmap&category=projects")
    assert.are.same({"p1@" .. team_conn, "p2@" .. team_conn}, ids(body))
    _, body = search(ada, "q=roadmap&category=financial")
    assert.are.same({"l1@" .. team_conn}, ids(body))
    _, body = search(ada, "q=roadmap&integration=records_source&limit=1")
    assert.are.same({"p1@" .. team_conn}, ids(body))
    _, body = search(ada, "q=roadmap&integration=hubspot")
    assert.are.equal(0, body.count)
  end)

  it("answers bad queries with bad_request, and FTS syntax in the words is just text", function()
    for _, q in ipairs({"", "q=", "q=%2A%2A%2A", "q=roadmap&limit=0", "q=roadmap&limit=51", "q=roadmap&limit=x",
                        "q=" .. ("a"):rep(501)}) do
      local status, body = search(ada, q)
      assert.are.equal(400, status, q)
      assert.are.equal("bad_request", body.error.code, q)
    end
    for _, q in ipairs({"%22roadmap", "NEAR(roadmap%20review)", "roadmap%20AND%20-hiring", "title:roadmap",
                        "roadmap%20OR", "roadmap%5E%7B%7D()", "%E2%80%9Croadmap%E2%80%9D"}) do
      local status, body = search(ada, "q=" .. q)
      assert.are.equal(200, status, q)
      assert.is_table(body.results, q)
    end
    local status = search(nil, "q=roadmap")
    assert.are.equal(401, status)
  end)

  it("shows a member only the team's shared records and their own, never financial ones", function()
    -- mo: the shared connection's projects records and their own, no ledger.
    local _, body = search(mo, "q=roadmap")
    local got = ids(body)
    table.sort(got)
    local want = {"p1@" .. team_conn, "p2@" .. team_conn, "p1@" .. mo_conn, "p2@" .. mo_conn}
    table.sort(want)
    assert.are.same(want, got)
    _, body = search(mo, "q=invoice%20OR%20payroll")
    assert.are.equal(0, body.count)
    local status, err = search(mo, "q=invoice&category=financial")
    assert.are.equal(403, status)
    assert.are.equal("forbidden", err.error.code)
    assert.are.equal("financial", err.error.details.category)

    -- zed, another member, does not see mo's own connection; ada neither.
    _, body = search(zed, "q=roadmap")
    assert.are.same({"p1@" .. team_conn, "p2@" .. team_conn}, ids(body))
    _, body = search(ada, "q=hiring")
    for _, r in ipairs(body.results) do assert.are.equal(team_conn, r.connection_id) end
    -- Another team sees nothing of acme's.
    _, body = search(other, "q=roadmap")
    assert.are.equal(0, body.count)

    -- An admin grants mo financial data; taken back, it is hidden again.
    local st = S.post(srv, ada, "/v1/permissions", {user = "mo", category = "financial", allow = true})
    assert.are.equal(200, st)
    _, body = search(mo, "q=invoice")
    assert.are.same({"l1@" .. team_conn}, ids(body))
    st = S.post(srv, ada, "/v1/permissions", {user = "mo", category = "financial"})
    assert.are.equal(200, st)
    _, body = search(mo, "q=invoice")
    assert.are.equal(0, body.count)
    -- And a role rule hides a category from every member.
    S.post(srv, ada, "/v1/permissions", {role = "member", category = "projects", allow = false})
    _, body = search(zed, "q=roadmap")
    assert.are.equal(0, body.count)
    _, body = search(ada, "q=roadmap")
    assert.are.equal(3, body.count)
    S.post(srv, ada, "/v1/permissions", {role = "member", category = "projects"})
  end)

  it("ferry search answers as the user would over HTTP", function()
    local code, out, err = h.ferry({"search", "roadmap", "--user", "mo", "--team", "acme", "--data", srv.data,
                                    "--providers", h.root .. "/tests/providers"})
    assert.are.equal(0, code, err)
    local cli = h.json.decode(out)
    local _, api = search(mo, "q=roadmap")
    assert.are.same(ids(api), ids(cli))
    code, _, err = h.ferry({"search", "invoice", "--user", "mo", "--team", "acme", "--category", "financial",
                            "--data", srv.data})
    assert.are.equal(1, code)
    assert.matches("may not see financial", err)
  end)
end)
