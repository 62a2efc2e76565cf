-- Runs the Argo CD resource customizations in argocd/resource_customizations as Argo CD's own
-- tests run those of its repository (util/lua in argoproj/argo-cd): every case of each
-- health_test.yaml through its health.lua, every discovery and action case of each
-- actions/action_test.yaml through actions/discovery.lua and actions/<action>/action.lua. Any
-- mismatch, script error, or file outside that layout fails the run.
--
--   lua5.1 argocd/test.lua [ROOT]           the tests under ROOT/resource_customizations
--                                           (ROOT: this file's directory by default)
--   lua5.1 argocd/test.lua --argocd-cm [ROOT]  the argocd-cm patch that installs them
--                                           (committed as argocd/argocd-cm.yaml)
--   lua5.1 argocd/test.lua --dump FILE...   the YAML files as read here, as one JSON object
--   lua5.1 argocd/test.lua --health SCRIPT  SCRIPT's verdict, as JSON, on the object given as a
--                                           Lua table constructor on stdin
--
-- Scripts run as Argo CD runs customizations from argocd-cm: Lua 5.1 (gopher-lua), the object in
-- the global `obj`, and no standard library but the base functions and `table`; require("os")
-- gives Argo CD's safe os library (os.time and os.date only). Here its clock is frozen at
-- FROZEN_TIME, so that an action's output is fixed, and os.date takes only the conversions whose
-- output Argo CD's implementation and C's agree on.
--
-- Fixtures are read by a reader of the YAML they use: block mappings and sequences, one-line
-- plain or quoted scalars, {} and [], whole-line comments. Anything else is an error, never a
-- guess; tests/argocd_health.rs checks the reader against serde_yaml on every fixture.

if _VERSION ~= "Lua 5.1" then
  io.stderr:write("argocd/test.lua: run me with lua5.1 (Argo CD's gopher-lua is Lua 5.1), not " .. _VERSION .. "\n")
  os.exit(2)
end

-- 2026-01-02T03:04:05Z: what os.time() says to the scripts.
local FROZEN_TIME = 1767323045

local function fail(message)
  error(message, 0)
end

local function read_file(path)
  local file, err = io.open(path, "rb")
  if not file then
    fail("cannot read " .. path .. ": " .. tostring(err))
  end
  local text = file:read("*a")
  file:close()
  return text
end

---------------------------------------------------------------------------------------------
-- YAML, the subset the fixtures use
---------------------------------------------------------------------------------------------

-- Whether a table read from YAML was a sequence or a mapping (an empty one is either in Lua).
local SEQUENCE, MAPPING = "sequence", "mapping"
local kind_of = setmetatable({}, { __mode = "k" })

local function new(kind)
  local t = {}
  kind_of[t] = kind
  return t
end

-- Plain scalars that YAML 1.1 (Argo CD's Go reader) and YAML 1.2 (serde_yaml) read differently,
-- or that look like numbers of another form: refused, so that a fixture means one thing.
local AMBIGUOUS = {
  yes = true, no = true, on = true, off = true, y = true, n = true,
  ["true"] = true, ["false"] = true, null = true,
}

-- Plain scalars that a YAML reader may take for a number (other than a decimal integer) or a
-- timestamp: refused too.
local NUMBER_LIKE = {
  "^[-+]?[%d_]+$", -- 007, +1, 1_000
  "^[-+]?[%d_]*%.[%d_]*$", -- 1.5, .5, 1.
  "^[-+]?[%d_]*%.?[%d_]*[eE][-+]?%d+$", -- 1e3
  "^0[xXoObB]", -- 0x1f, 0o17
  "^[-+]?%.%a", -- .inf, .nan
  "^%d%d%d%d%-%d%d?%-%d%d?", -- 2026-01-02, 2026-01-02T03:04:05Z
  "^[-+]?%d[%d_]*:[0-5]?%d", -- 1:20 (YAML 1.1 base 60)
}

-- The value of a one-line scalar; `at` names the place for errors.
local function scalar(text, at)
  local first = text:sub(1, 1)
  if first == '"' then
    if #text < 2 or text:sub(-1) ~= '"' then
      fail(at .. ": unterminated double-quoted scalar")
    end
    local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", n = "\n", t = "\t" }
    local body = text:sub(2, -2)
    if body:gsub("\\.", ""):find('"', 1, true) then
      fail(at .. ": a double-quoted scalar must end at its first unescaped quote")
    end
    return (body:gsub("\\(.)", function(c)
      return escapes[c] or fail(at .. ": unsupported escape \\" .. c)
    end))
  elseif first == "'" then
    if #text < 2 or text:sub(-1) ~= "'" then
      fail(at .. ": unterminated single-quoted scalar")
    end
    local body = text:sub(2, -2)
    if body:gsub("''", ""):find("'", 1, true) then
      fail(at .. ": a single-quoted scalar must end at its first lone quote")
    end
    return (body:gsub("''", "'"))
  elseif text == "{}" then
    return new(MAPPING)
  elseif text == "[]" then
    return new(SEQUENCE)
  elseif first:find("[%[%]{}&*!|>%%@`?,#]") then
    fail(at .. ": unsupported YAML (flow collection, anchor, alias, tag, block scalar...): " .. text)
  elseif text:find(" #", 1, true) then
    fail(at .. ": a comment after a value is not supported: " .. text)
  elseif text:find(": ", 1, true) or text:sub(-1) == ":" then
    fail(at .. ": ': ' in a plain scalar; quote it: " .. text)
  elseif text == "true" then
    return true
  elseif text == "false" then
    return false
  elseif text == "null" or text == "~" then
    return nil
  elseif AMBIGUOUS[text:lower()] then
    fail(at .. ": ambiguous plain scalar (YAML 1.1 and 1.2 differ); quote it: " .. text)
  elseif text:find("^%-?[1-9]%d*$") or text == "0" then
    return tonumber(text)
  end
  for _, pattern in ipairs(NUMBER_LIKE) do
    if text:find(pattern) then
      fail(at .. ": a number, date or time other than a decimal integer; quote it: " .. text)
    end
  end
  return text
end

-- The index of the quote closing the quoted scalar at the start of `text`, if any.
local function closing_quote(text)
  local quote, i = text:sub(1, 1), 2
  while i <= #text do
    local c = text:sub(i, i)
    if quote == '"' and c == "\\" then
      i = i + 2
    elseif c == quote then
      if quote == "'" and text:sub(i + 1, i + 1) == "'" then
        i = i + 2
      else
        return i
      end
    else
      i = i + 1
    end
  end
  return nil
end

-- `key: rest` split into the key and rest, or nil when `text` is not a mapping entry.
local function mapping_entry(text, at)
  local first, key_end, colon = text:sub(1, 1), nil, nil
  if first == '"' or first == "'" then
    key_end = closing_quote(text)
    if not key_end then
      return nil
    end
    colon = text:find("^%s*:", key_end + 1)
    if not colon then
      return nil
    end
    colon = text:find(":", key_end + 1, true)
  else
    colon = text:find(": ", 1, true)
    if not colon and text:sub(-1) == ":" then
      colon = #text
    end
    if not colon then
      return nil
    end
    key_end = colon - 1
  end
  local next_char = text:sub(colon + 1, colon + 1)
  if next_char ~= "" and next_char ~= " " then
    return nil
  end
  local raw_key = text:sub(1, key_end):match("^(.-)%s*$")
  local key = scalar(raw_key, at)
  if type(key) ~= "string" or key == "" then
    fail(at .. ": mapping keys must be non-empty strings: " .. raw_key)
  end
  return key, text:sub(colon + 1):match("^%s*(.-)$")
end

local function is_sequence_entry(text)
  return text == "-" or text:sub(1, 2) == "- "
end

local parse_node

-- The lines of the block, starting at line i, indented exactly `indent`.
local function parse_sequence(lines, i, indent)
  local sequence = new(SEQUENCE)
  while lines[i] and lines[i].indent == indent and is_sequence_entry(lines[i].text) do
    local line = lines[i]
    local rest = line.text:sub(2):match("^%s*(.-)$")
    local value
    if rest == "" then
      value, i = parse_node(lines, i + 1, indent + 1)
    elseif is_sequence_entry(rest) or mapping_entry(rest, line.at) then
      -- The entry's node starts on this line, in the column where `rest` does.
      local column = indent + #line.text - #rest
      lines[i] = { indent = column, text = rest, at = line.at }
      value, i = parse_node(lines, i, column)
    else
      value, i = scalar(rest, line.at), i + 1
    end
    if value == nil then
      fail(line.at .. ": empty or null sequence entries are not supported")
    end
    sequence[#sequence + 1] = value
  end
  if lines[i] and lines[i].indent > indent then
    fail(lines[i].at .. ": unexpected indentation (multi-line scalars are not supported)")
  end
  return sequence, i
end

local function parse_mapping(lines, i, indent)
  local mapping, seen = new(MAPPING), {}
  while lines[i] and lines[i].indent == indent and not is_sequence_entry(lines[i].text) do
    local line = lines[i]
    local key, rest = mapping_entry(line.text, line.at)
    if key == nil then
      fail(line.at .. ": expected 'key: value', found: " .. line.text)
    end
    if seen[key] then
      fail(line.at .. ": duplicate key " .. key)
    end
    seen[key] = true
    local value
    if rest == "" then
      local following = lines[i + 1]
      if following and (following.indent > indent
          or (following.indent == indent and is_sequence_entry(following.text))) then
        value, i = parse_node(lines, i + 1, following.indent)
      else
        value, i = nil, i + 1
      end
    else
      value, i = scalar(rest, line.at), i + 1
    end
    mapping[key] = value
  end
  if lines[i] and lines[i].indent > indent then
    fail(lines[i].at .. ": unexpected indentation (multi-line scalars are not supported)")
  end
  return mapping, i
end

-- The node at line i, which must be indented at least `min_indent`; nil if there is none.
parse_node = function(lines, i, min_indent)
  local line = lines[i]
  if line == nil or line.indent < min_indent then
    return nil, i
  end
  if is_sequence_entry(line.text) then
    return parse_sequence(lines, i, line.indent)
  elseif mapping_entry(line.text, line.at) then
    return parse_mapping(lines, i, line.indent)
  end
  fail(line.at .. ": expected a mapping or a sequence (multi-line scalars are not supported)")
end

local function parse_yaml(text, name)
  local lines, number = {}, 0
  for raw in (text .. "\n"):gmatch("([^\n]*)\n") do
    number = number + 1
    local at = name .. ":" .. number
    local line = raw:gsub("\r$", "")
    if line:find("\t", 1, true) then
      fail(at .. ": tabs are not supported")
    end
    local body = line:match("^%s*(.-)%s*$")
    if body == "---" and #lines == 0 then
      -- the document's start marker
    elseif body == "---" or body == "..." then
      fail(at .. ": one document per file")
    elseif body ~= "" and body:sub(1, 1) ~= "#" then
      lines[#lines + 1] = { indent = #line:match("^ *"), text = body, at = at }
    end
  end
  if #lines == 0 then
    fail(name .. ": empty document")
  end
  local value, i = parse_node(lines, 1, 0)
  if lines[i] then
    fail(lines[i].at .. ": unexpected content")
  end
  return value
end

local function load_yaml(path)
  return parse_yaml(read_file(path), path)
end

---------------------------------------------------------------------------------------------
-- JSON out, and comparing values
---------------------------------------------------------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then
      return a < b
    end
    return type(a) == "number"
  end)
  return keys
end

local function is_array(t)
  if kind_of[t] then
    return kind_of[t] == SEQUENCE
  end
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n > 0 and n == #t
end

local function json(value)
  local kind = type(value)
  if kind == "nil" then
    return "null"
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "number" then
    if value == math.floor(value) and math.abs(value) < 2 ^ 53 then
      return string.format("%d", value)
    end
    return string.format("%.17g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif kind == "table" then
    local parts = {}
    if is_array(value) then
      for _, item in ipairs(value) do
        parts[#parts + 1] = json(item)
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for _, k in ipairs(sorted_keys(value)) do
      parts[#parts + 1] = json(tostring(k)) .. ":" .. json(value[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  fail("cannot write a " .. kind .. " as JSON")
end

local function path_of(path, key)
  if type(key) == "number" then
    return path .. "[" .. key .. "]"
  elseif key:find("^[%a_][%w_]*$") then
    return path .. "." .. key
  end
  return path .. "[" .. json(key) .. "]"
end

-- The first place where `actual` differs from `expected`, or nil. An empty table equals an empty
-- table, whether read as a sequence or a mapping: Lua cannot tell them apart either.
local function difference(expected, actual, path)
  if type(expected) ~= "table" or type(actual) ~= "table" then
    if expected ~= actual then
      return path .. ": expected " .. json(expected) .. ", got " .. json(actual)
    end
    return nil
  end
  local keys, seen = {}, {}
  for _, t in ipairs({ expected, actual }) do
    for _, k in ipairs(sorted_keys(t)) do
      if not seen[k] then
        seen[k] = true
        keys[#keys + 1] = k
      end
    end
  end
  for _, k in ipairs(keys) do
    local found = difference(expected[k], actual[k], path_of(path, k))
    if found then
      return found
    end
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- Running a script as Argo CD does
---------------------------------------------------------------------------------------------

-- The conversions of os.date whose output C's strftime (here) and Argo CD's safe os library
-- (util/lua/oslib_safe.go) agree on; with another one the script would say something else there.
local SAME_IN_ARGO_CD = { d = true, F = true, H = true, m = true, M = true, S = true, X = true,
  y = true, Y = true, ["%"] = true }

local safe_os = {
  time = function(fields)
    if fields == nil then
      return FROZEN_TIME
    end
    return os.time(fields)
  end,
  date = function(format, time)
    -- string.sub, not format:sub: string methods are off while a script runs.
    local sub = string.sub
    format = format or "%c"
    if sub(format, 1, 2) ~= "*t" and sub(format, 1, 3) ~= "!*t" then
      local i = 1
      while i <= #format do
        if sub(format, i, i) == "%" then
          local conversion = sub(format, i + 1, i + 1)
          if not SAME_IN_ARGO_CD[conversion] then
            error("os.date: %" .. conversion .. " is not what Argo CD's os.date makes of it", 2)
          end
          i = i + 2
        else
          i = i + 1
        end
      end
    end
    return os.date(format, time or FROZEN_TIME)
  end,
}

local BASE_FUNCTIONS = { "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
  "print", "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
  "type", "unpack", "xpcall", "_VERSION" }

local function sandbox(object)
  local env = { obj = object }
  for _, name in ipairs(BASE_FUNCTIONS) do
    env[name] = _G[name]
  end
  env.table = {}
  for k, v in pairs(table) do
    env.table[k] = v
  end
  env.require = function(name)
    if name == "os" then
      return safe_os
    end
    error("module '" .. tostring(name) .. "' not found: Argo CD preloads only os", 2)
  end
  env._G = env
  return env
end

-- What the script at `path` returns for `object`. Without Argo CD's string library, string
-- methods (s:find(...)) fail there, so they fail here too; a script gets a million instructions
-- (Argo CD gives it a second).
local function run_script(path, object)
  local chunk, err = loadstring(read_file(path), "@" .. path)
  if not chunk then
    fail(err)
  end
  setfenv(chunk, sandbox(object))
  local string_metatable = getmetatable("")
  local string_index = string_metatable.__index
  string_metatable.__index = nil
  debug.sethook(function()
    error("the script ran for more than a million instructions", 2)
  end, "", 1000000)
  local ok, result = pcall(chunk)
  debug.sethook()
  string_metatable.__index = string_index
  if not ok then
    fail(tostring(result))
  end
  if type(result) ~= "table" then
    fail(path .. ": expected a table from the script, not " .. type(result))
  end
  return result
end

local HEALTH_STATUSES = { Healthy = true, Progressing = true, Suspended = true, Degraded = true,
  Missing = true, Unknown = true }

-- The health Argo CD shows for the script's result.
local function health_of(result)
  if not HEALTH_STATUSES[result.status] then
    return { status = "Unknown", message = "Lua returned an invalid health status" }
  end
  return { status = result.status, message = result.message or "" }
end

-- A discovery result as Argo CD lists it: by name, `disabled` false unless true.
local function actions_of(result)
  local actions = {}
  for name, definition in pairs(result) do
    local action = { name = name, disabled = false }
    if type(definition) == "table" then
      for k, v in pairs(definition) do
        action[k] = v
      end
      action.disabled = definition.disabled == true
    end
    actions[name] = action
  end
  return actions
end

---------------------------------------------------------------------------------------------
-- The tests
---------------------------------------------------------------------------------------------

local function script_directory()
  return (arg[0]:match("^(.*)/[^/]*$")) or "."
end

-- Every file under `dir`, relative to it, sorted.
local function files_under(dir)
  local listing = io.popen("cd '" .. dir:gsub("'", "'\\''") .. "' && find . -type f | LC_ALL=C sort")
  local files = {}
  for line in listing:lines() do
    files[#files + 1] = line:gsub("^%./", "")
  end
  listing:close()
  return files
end

local function split(path)
  local parts = {}
  for part in path:gmatch("[^/]+") do
    parts[#parts + 1] = part
  end
  return parts
end

local function run_tests(root)
  local base = root .. "/resource_customizations"
  local files = files_under(base)
  if #files == 0 then
    fail("no files under " .. base)
  end

  -- The customizations by kind ("<group>/<Kind>"), and the files of each.
  local kinds, order = {}, {}
  for _, file in ipairs(files) do
    local parts = split(file)
    if #parts < 3 then
      fail(base .. "/" .. file .. ": outside a <group>/<Kind> directory")
    end
    local kind = parts[1] .. "/" .. parts[2]
    if not kinds[kind] then
      kinds[kind] = { files = {} }
      order[#order + 1] = kind
    end
    kinds[kind].files[table.concat(parts, "/", 3)] = true
  end

  local counts = { health = 0, discovery = 0, action = 0 }
  local failures = {}
  local function case(kind, what, name, check)
    local ok, problem = pcall(check)
    if ok and problem == nil then
      counts[what] = counts[what] + 1
      print(string.format("ok    %s %s %s", kind, what, name))
    else
      local message = ok and problem or tostring(problem)
      failures[#failures + 1] = string.format("%s %s %s: %s", kind, what, name, message)
      print(string.format("FAIL  %s %s %s\n      %s", kind, what, name, message))
    end
  end

  for _, kind in ipairs(order) do
    local dir, present, used = base .. "/" .. kind, kinds[kind].files, {}
    local function fixture(relative, within)
      local path = (within and within .. "/" or "") .. relative
      if not present[path] then
        fail("no file " .. dir .. "/" .. path)
      end
      used[path] = true
      return load_yaml(dir .. "/" .. path)
    end

    if present["health.lua"] or present["health_test.yaml"] then
      used["health.lua"], used["health_test.yaml"] = true, true
      if not (present["health.lua"] and present["health_test.yaml"]) then
        fail(dir .. ": health.lua and health_test.yaml go together")
      end
      local tests = load_yaml(dir .. "/health_test.yaml")
      if type(tests.tests) ~= "table" or #tests.tests == 0 then
        fail(dir .. "/health_test.yaml: no tests")
      end
      for _, test in ipairs(tests.tests) do
        case(kind, "health", tostring(test.inputPath), function()
          local expected = {
            status = test.healthStatus and test.healthStatus.status,
            message = test.healthStatus and test.healthStatus.message or "",
          }
          local actual = health_of(run_script(dir .. "/health.lua", fixture(test.inputPath)))
          if actual.status ~= expected.status or actual.message ~= expected.message then
            return "expected " .. json(expected) .. "\n      got      " .. json(actual)
          end
        end)
      end
    end

    if present["actions/action_test.yaml"] or present["actions/discovery.lua"] then
      used["actions/action_test.yaml"], used["actions/discovery.lua"] = true, true
      if not (present["actions/action_test.yaml"] and present["actions/discovery.lua"]) then
        fail(dir .. "/actions: discovery.lua and action_test.yaml go together")
      end
      local tests = load_yaml(dir .. "/actions/action_test.yaml")
      local discovered, tested = {}, {}
      for _, test in ipairs(tests.discoveryTests or {}) do
        case(kind, "discovery", tostring(test.inputPath), function()
          local actual = actions_of(run_script(dir .. "/actions/discovery.lua",
            fixture(test.inputPath, "actions")))
          local expected = {}
          for _, action in ipairs(test.result or {}) do
            local copy = {}
            for k, v in pairs(action) do
              copy[k] = v
            end
            copy.disabled = action.disabled == true
            expected[action.name] = copy
          end
          for name in pairs(actual) do
            discovered[name] = true
          end
          return difference(expected, actual, "actions")
        end)
      end
      for _, test in ipairs(tests.actionTests or {}) do
        local script = "actions/" .. tostring(test.action) .. "/action.lua"
        used[script] = true
        tested[test.action] = true
        case(kind, "action", test.action .. " " .. tostring(test.inputPath), function()
          if not present[script] then
            fail("no file " .. dir .. "/" .. script)
          end
          local actual = run_script(dir .. "/" .. script, fixture(test.inputPath, "actions"))
          return difference(fixture(test.expectedOutputPath, "actions"), actual, "obj")
        end)
      end
      for name in pairs(discovered) do
        if not tested[name] then
          failures[#failures + 1] = kind .. ": action " .. name .. " is discovered but has no actionTests"
        end
      end
      for file in pairs(present) do
        local action = file:match("^actions/([^/]+)/action%.lua$")
        if action and not discovered[action] then
          failures[#failures + 1] = kind .. ": " .. file .. " is never offered by discovery.lua's tests"
        end
      end
    end

    for _, file in ipairs(sorted_keys(present)) do
      if not used[file] then
        failures[#failures + 1] = kind .. ": " .. file .. " is used by no test (or is outside Argo CD's layout)"
      end
    end
  end

  print(string.format("%d health, %d discovery and %d action cases passed for %d kinds (%s)",
    counts.health, counts.discovery, counts.action, #order, table.concat(order, ", ")))
  if #failures > 0 then
    io.stderr:write(#failures .. " failure(s):\n  " .. table.concat(failures, "\n  ") .. "\n")
    return false
  end
  return true
end

---------------------------------------------------------------------------------------------
-- The argocd-cm patch
---------------------------------------------------------------------------------------------

-- `text` as a YAML literal block scalar's lines, indented by `indent` spaces.
local function block(text, indent, name)
  if text:find("^[ \n]") or text:sub(-1) ~= "\n" or text:find("\n\n$") or text:find("[\t\r]") then
    fail(name .. ": a literal block needs text starting on its first column, with no tab or CR, ending in one newline")
  end
  local pad, out = string.rep(" ", indent), {}
  for line in text:gmatch("([^\n]*)\n") do
    out[#out + 1] = line == "" and "" or pad .. line
  end
  return table.concat(out, "\n") .. "\n"
end

local function argocd_cm(root)
  local base = root .. "/resource_customizations"
  local kinds, actions = {}, {}
  for _, file in ipairs(files_under(base)) do
    local parts = split(file)
    local kind = parts[1] .. "_" .. (parts[2] or "")
    local rest = table.concat(parts, "/", 3)
    if rest == "health.lua" then
      kinds[#kinds + 1] = { key = kind, path = base .. "/" .. file }
    elseif rest:find("^actions/[^/]+/action%.lua$") then
      actions[kind] = actions[kind] or {}
      table.insert(actions[kind], { name = parts[4], path = base .. "/" .. file })
    end
  end
  local out = {
    "# Generated by `lua5.1 argocd/test.lua --argocd-cm` from argocd/resource_customizations: edit those",
    "# files, then regenerate (tests/argocd_health.rs checks this file is current). Install with",
    "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd/argocd-cm.yaml",
    "# or as a patch of argocd-cm in the kustomization that installs Argo CD.",
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata:",
    "  name: argocd-cm",
    "  namespace: argocd",
    "data:",
  }
  for _, kind in ipairs(kinds) do
    out[#out + 1] = "  resource.customizations.health." .. kind.key .. ": |"
    out[#out + 1] = block(read_file(kind.path), 4, kind.path):sub(1, -2)
  end
  for _, key in ipairs(sorted_keys(actions)) do
    local discovery = base .. "/" .. key:gsub("_", "/", 1) .. "/actions/discovery.lua"
    out[#out + 1] = "  resource.customizations.actions." .. key .. ": |"
    out[#out + 1] = "    discovery.lua: |"
    out[#out + 1] = block(read_file(discovery), 6, discovery):sub(1, -2)
    out[#out + 1] = "    definitions:"
    for _, action in ipairs(actions[key]) do
      out[#out + 1] = "    - name: " .. action.name
      out[#out + 1] = "      action.lua: |"
      out[#out + 1] = block(read_file(action.path), 8, action.path):sub(1, -2)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------------------------

local function main()
  local mode = arg[1]
  if mode == "--dump" then
    local parts = {}
    for i = 2, #arg do
      parts[#parts + 1] = json(arg[i]) .. ":" .. json(load_yaml(arg[i]))
    end
    print("{" .. table.concat(parts, ",") .. "}")
    return true
  elseif mode == "--health" then
    local literal = io.read("*a")
    local chunk, err = loadstring("return " .. literal, "=stdin")
    if not chunk then
      fail(err)
    end
    setfenv(chunk, {})
    print(json(health_of(run_script(arg[2], chunk()))))
    return true
  elseif mode == "--argocd-cm" then
    io.write(argocd_cm(arg[2] or script_directory()))
    return true
  elseif mode and mode:sub(1, 1) == "-" then
    fail("unknown option " .. mode)
  end
  return run_tests(mode or script_directory())
end

local ok, result = pcall(main)
if not ok then
  io.stderr:write("argocd/test.lua: " .. tostring(result) .. "\n")
  os.exit(2)
end
os.exit(result and 0 or 1)
