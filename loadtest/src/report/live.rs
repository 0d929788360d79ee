//! What `--live` shows while a run, a sweep or a breakpoint search goes on: the state as
//! data ([`LiveState`], served as `/state.json` once a second), the terminal line made from
//! it, and the page that draws it (one self-contained HTML file: inline script and styles,
//! nothing fetched but `/state.json` from the same server). The state during a run is the
//! recorder's, the same the report is made of; once the run ends it is the report's own
//! figures, so the page's last state equals the report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::format::count;
use super::TimelinePoint;

/// Everything the page and the terminal line show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    /// The scenario's (or the sweep's, or the search's) name.
    pub title: String,
    /// "starting", "running", "finished".
    pub phase: String,
    /// The sweep row or breakpoint step being run ("row 2 of 4: tx_mode=deferred").
    pub step: Option<String>,
    pub elapsed_s: f64,
    /// An estimate, when the run has a length or a batch to go by.
    pub remaining_s: Option<f64>,
    /// Per second since the load started: the report's time line.
    pub timeline: Vec<TimelinePoint>,
    pub totals: LiveTotals,
    /// Per request name: requests, failures, client-visible lock errors.
    pub requests: BTreeMap<String, LiveRequest>,
    /// Faults as they happened: (start s, end s or None while it lasts, label).
    pub faults: Vec<LiveFault>,
    /// The sweep's finished rows, or the search's finished steps.
    pub rows: Vec<LiveRow>,
    /// The report the run wrote, once it has.
    pub report: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveTotals {
    pub sent: u64,
    pub answered: u64,
    pub failures: u64,
    /// Lock errors the clients saw (503s, answers that mention a lock).
    pub lock_errors_clients: u64,
    /// Lock errors in the app's log (an app lockbench reads the log of); the reference
    /// server's counters are read at the end of the run.
    pub lock_errors_server: u64,
    /// The report's total, once the run has ended.
    pub lock_errors_total: Option<u64>,
    pub photos_processed: u64,
    pub photos_total: Option<u64>,
    /// p99 of the last five seconds' requests, ms.
    pub p99_recent_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveRequest {
    pub count: u64,
    pub failures: u64,
    pub lock_errors: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveFault {
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveRow {
    pub label: String,
    pub passed: bool,
    pub lock_errors: u64,
    pub lost_writes: Option<u64>,
    pub error_rate: f64,
    pub report: String,
}

fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The terminal line: elapsed and remaining, requests per second sent and answered (the last
/// whole second), failures, lock errors with their source, p99 of the last five seconds,
/// the batch, the sweep row or search step.
pub fn terminal_line(s: &LiveState) -> String {
    let last = s.timeline.iter().rev().nth(1).or(s.timeline.last());
    let (sent, answered) = last.map_or((0, 0), |p| (p.sent, p.requests));
    let mut line = duration(s.elapsed_s);
    if let Some(r) = s.remaining_s {
        line.push_str(&format!(" (~{} left)", duration(r)));
    }
    line.push_str(&format!(
        " | {sent} req/s sent, {answered} answered | {} failed | lock errors: {} seen by clients",
        count(s.totals.failures),
        count(s.totals.lock_errors_clients)
    ));
    if s.totals.lock_errors_server > 0 {
        line.push_str(&format!(
            ", {} in the app's log",
            count(s.totals.lock_errors_server)
        ));
    }
    line.push_str(&format!(" | p99 5s {:.1} ms", s.totals.p99_recent_ms));
    if let Some(total) = s.totals.photos_total {
        line.push_str(&format!(
            " | photos {}/{}",
            count(s.totals.photos_processed),
            count(total)
        ));
    }
    if let Some(step) = &s.step {
        line.push_str(&format!(" | {step}"));
    }
    line
}

/// The page: polls `/state.json` once a second and redraws; stops polling when the run has
/// finished, keeping its last state on screen.
pub fn page(title: &str) -> String {
    PAGE.replace("{{TITLE}}", &super::format::esc(title))
}

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lockbench live: {{TITLE}}</title>
<style>
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a202c;margin:0;background:#f7f7f5}
main{max-width:1100px;margin:0 auto;padding:16px 24px 40px;background:#fff}
h1{font-size:1.4rem;margin:0 0 6px}h2{font-size:1.1rem;border-bottom:2px solid #e2e8f0;padding-bottom:4px;margin:22px 0 8px}
.status{padding:10px 14px;border-left:8px solid #3182ce;background:#ebf8ff;border-radius:4px;margin-bottom:10px}
.status.finished{border-color:#2f855a;background:#e8f5ec}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.tile{border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px;min-width:120px}
.tile .v{font-size:1.4rem;font-weight:700;font-variant-numeric:tabular-nums}.tile .k{color:#4a5568;font-size:.85rem}
table{border-collapse:collapse;font-size:.9rem;display:block;overflow-x:auto;max-width:100%}
th,td{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:left}th{background:#f1f5f9}
td.n{text-align:right;font-variant-numeric:tabular-nums}td.fail{color:#c53030;font-weight:700}td.pass{color:#2f855a}
svg{display:block;width:100%;height:auto;background:#fff}svg text{font-size:11px;fill:#2d3748}
.grid{stroke:#e2e8f0}.axis{stroke:#4a5568}rect.fault{fill:#ed8936;fill-opacity:.16}
.legend span{display:inline-block;margin-right:14px;font-size:.85rem}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
</style></head><body><main>
<h1>lockbench live: {{TITLE}}</h1>
<div id="status" class="status">waiting for the first figures…</div>
<div class="tiles">
<div class="tile"><div class="v" id="answered">0</div><div class="k">requests answered</div></div>
<div class="tile"><div class="v" id="failures">0</div><div class="k">failed</div></div>
<div class="tile"><div class="v" id="lock_errors">0</div><div class="k">lock errors</div></div>
<div class="tile"><div class="v" id="p99">0</div><div class="k">p99 ms, last 5 s</div></div>
<div class="tile"><div class="v" id="photos">-</div><div class="k">photos processed</div></div>
</div>
<div id="charts"></div>
<h2>Requests</h2><table id="requests"></table>
<div id="rows_box" style="display:none"><h2>Finished rows</h2><table id="rows"></table></div>
<script>
const COLORS=["#3182ce","#c53030","#2f855a","#805ad5","#d69e2e","#319795","#dd6b20","#718096"];
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
function fmt(n){return Number(n).toLocaleString("en-US");}
function chart(id,title,xs,series,faults,unit){
  const W=1000,H=230,L=60,R=14,T=24,B=34;
  let max=0;series.forEach(s=>s.ys.forEach(y=>{if(y>max)max=y;}));
  const xmax=Math.max(1,xs.length?xs[xs.length-1]:1);
  let out=`<svg id="${id}" data-points="${xs.length}" viewBox="0 0 ${W} ${H}"><text x="${L}" y="15" font-weight="600">${esc(title)}</text>`;
  if(max===0){out+=`<text x="${L}" y="${H/2}">${esc(title)}: 0 so far.</text></svg>`;return out;}
  const sx=x=>L+(W-L-R)*x/xmax, sy=y=>H-B-(H-B-T)*y/max;
  faults.forEach(f=>{const e=f.end_s==null?xmax:f.end_s;out+=`<rect class="fault" x="${sx(f.start_s)}" y="${T}" width="${Math.max(2,sx(e)-sx(f.start_s))}" height="${H-B-T}"><title>${esc(f.label)}</title></rect>`;});
  for(let i=0;i<=4;i++){const v=max*i/4,y=sy(v);out+=`<line class="grid" x1="${L}" x2="${W-R}" y1="${y}" y2="${y}"/><text x="${L-6}" y="${y+4}" text-anchor="end">${fmt(Math.round(v*10)/10)}</text>`;}
  for(let i=0;i<=4;i++){const x=Math.round(xmax*i/4);out+=`<text x="${sx(x)}" y="${H-B+13}" text-anchor="middle">${x}</text>`;}
  out+=`<line class="axis" x1="${L}" x2="${W-R}" y1="${H-B}" y2="${H-B}"/><text x="${L}" y="${H-2}">seconds since the load started${unit?" · "+esc(unit):""}</text>`;
  series.forEach((s,i)=>{const pts=xs.map((x,j)=>`${sx(x).toFixed(1)},${sy(s.ys[j]).toFixed(1)}`).join(" ");out+=`<polyline fill="none" stroke="${COLORS[i%COLORS.length]}" stroke-width="1.6" points="${pts}"/>`;});
  out+=`</svg><div class="legend">`+series.map((s,i)=>`<span><i style="background:${COLORS[i%COLORS.length]}"></i>${esc(s.name)}</span>`).join("")+`</div>`;
  return out;
}
function byName(tl,key){const names=new Set();tl.forEach(p=>Object.keys(p[key]||{}).forEach(n=>names.add(n)));return [...names].sort().map(n=>({name:n,ys:tl.map(p=>(p[key]||{})[n]||0)}));}
let done=false;
function draw(s){
  const tl=s.timeline,xs=tl.map(p=>p.t_s);
  const st=document.getElementById("status");
  let text=(s.phase==="finished"?"Finished":"Running")+` · ${Math.round(s.elapsed_s)} s`;
  if(s.remaining_s!=null&&s.phase!=="finished")text+=` · about ${Math.round(s.remaining_s)} s left`;
  if(s.step)text+=` · ${s.step}`;
  if(s.report)text+=` · report: ${s.report}`;
  st.textContent=text;st.className="status"+(s.phase==="finished"?" finished":"");
  const t=s.totals;
  document.getElementById("answered").textContent=fmt(t.answered);
  document.getElementById("failures").textContent=fmt(t.failures);
  document.getElementById("lock_errors").textContent=fmt(t.lock_errors_total!=null?t.lock_errors_total:t.lock_errors_clients+t.lock_errors_server);
  document.getElementById("p99").textContent=t.p99_recent_ms.toFixed(1);
  document.getElementById("photos").textContent=t.photos_total!=null?`${fmt(t.photos_processed)} / ${fmt(t.photos_total)}`:"-";
  let c=chart("c_requests","Requests per second",xs,[{name:"sent",ys:tl.map(p=>p.sent)},{name:"answered",ys:tl.map(p=>p.requests)}],s.faults,"");
  c+=chart("c_failures","Failures per second, by request",xs,byName(tl,"failures_by_request"),s.faults,"");
  c+=chart("c_locks","Lock errors per second, by request (clients) and in the app's log",xs,byName(tl,"lock_errors_by_request").concat([{name:"app's log",ys:tl.map(p=>p.server_lock_errors)}]),s.faults,"");
  c+=chart("c_p99","p99 latency per second",xs,[{name:"p99",ys:tl.map(p=>p.p99_us/1000)}],s.faults,"ms");
  if(t.photos_total!=null)c+=chart("c_photos","Photos processed",xs,[{name:"processed",ys:tl.map(p=>p.photos_processed)}],s.faults,"");
  if(tl.some(p=>p.wal_bytes>0))c+=chart("c_wal","WAL size",xs,[{name:"WAL",ys:tl.map(p=>p.wal_bytes/1048576)}],s.faults,"MiB");
  document.getElementById("charts").innerHTML=c;
  let r="<tr><th>request</th><th>answered</th><th>failed</th><th>lock errors</th></tr>";
  Object.entries(s.requests).forEach(([n,v])=>{r+=`<tr><td>${esc(n)}</td><td class="n">${fmt(v.count)}</td><td class="n">${fmt(v.failures)}</td><td class="n">${fmt(v.lock_errors)}</td></tr>`;});
  document.getElementById("requests").innerHTML=r;
  if(s.rows.length){document.getElementById("rows_box").style.display="";
    let h="<tr><th>row</th><th>gates</th><th>lock errors</th><th>lost writes</th><th>error rate</th></tr>";
    s.rows.forEach(w=>{h+=`<tr><td><a href="file://${esc(w.report)}">${esc(w.label)}</a></td><td class="${w.passed?"pass":"fail"}">${w.passed?"pass":"FAIL"}</td><td class="n">${fmt(w.lock_errors)}</td><td class="n">${w.lost_writes==null?"unknown":fmt(w.lost_writes)}</td><td class="n">${(w.error_rate*100).toFixed(2)}%</td></tr>`;});
    document.getElementById("rows").innerHTML=h;}
  if(s.phase==="finished")done=true;
}
async function poll(){
  if(done)return;
  try{const r=await fetch("/state.json",{cache:"no-store"});if(r.ok)draw(await r.json());}catch(e){
    document.getElementById("status").textContent+=" · the run has ended (no answer from lockbench)";done=true;return;}
  setTimeout(poll,1000);
}
poll();
</script></main></body></html>
"##;
