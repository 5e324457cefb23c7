%% Erlang-side checks for the kdist integration tests.
%%
%% Each check runs in a node started by tests/integration/lib.sh as
%%   erl -noshell -sname N ... -pa EBIN -run kdist_peer main CHECK ARG...
%% and ends the node with status 0 (pass) or 1 (fail), after printing
%% "kdist_peer: CHECK ok" or "kdist_peer: CHECK failed: REASON". A watchdog
%% halts with status 2 when a check hangs, so no test waits forever.
%%
%% The same module also serves as the long-lived erl node of the tests
%% (`serve`): it registers `inbox`, which appends every message it receives
%% to a file, and `echo` and `sink` with the contract of the kdist node, so
%% the harness can check itself against erl when build/kdist is missing.
-module(kdist_peer).

-export([main/1, serve/1, soak/1]).

-define(WATCHDOG_MS, 90000).
-define(REPLY_MS, 5000).

%% Flags a hand-written client announces: the OTP 26 mandatory set
%% (0x403070F94) plus MANDATORY_25_DIGEST, DIST_MONITOR, DIST_MONITOR_NAME
%% and SMALL_ATOM_TAGS. No atom cache and no fragments, so every packet is
%% a pass-through one: 'p', 131, Control [, 131, Message].
-define(RAW_FLAGS, (16#403070F94 bor 16#4000000 bor 16#8 bor 16#20 bor 16#4000)).

%% --- entry points -----------------------------------------------------------

main([Check | Args]) ->
	process_flag(trap_exit, true),
	{ok, _} = timer:apply_after(?WATCHDOG_MS, erlang, apply,
				    [fun watchdog_expired/1, [Check]]),
	Result = try run(Check, Args) of
		ok -> ok;
		{skip, Why} -> {skip, Why}
	catch
		Class:Reason:Stack ->
			{failed, {Class, Reason, hd(Stack ++ [none])}}
	end,
	finish(Check, Result).

watchdog_expired(Check) ->
	io:format("kdist_peer: ~s failed: no result after ~b ms~n",
		  [Check, ?WATCHDOG_MS]),
	erlang:halt(2).

finish(Check, ok) ->
	io:format("kdist_peer: ~s ok~n", [Check]),
	erlang:halt(0);
finish(Check, {skip, Why}) ->
	io:format("kdist_peer: ~s skipped: ~s~n", [Check, Why]),
	erlang:halt(77);
finish(Check, {failed, {error, {check, Why}, _}}) ->
	io:format("kdist_peer: ~s failed: ~s~n", [Check, Why]),
	erlang:halt(1);
finish(Check, {failed, Reason}) ->
	io:format("kdist_peer: ~s failed: ~0p~n", [Check, Reason]),
	erlang:halt(1).

%% Fail the running check with a sentence built from Fmt and Args.
fail(Fmt, Args) ->
	error({check, lists:flatten(io_lib:format(Fmt, Args))}).

run("ping", [Node]) -> check_ping(node_atom(Node));
run("pang", [Node]) -> check_pang(node_atom(Node));
run("echo", [Node]) -> check_echo(node_atom(Node));
run("sink", [Node, Count, Size]) ->
	check_sink(node_atom(Node), list_to_integer(Count), list_to_integer(Size));
run("large", [Node, MiB]) -> check_large(node_atom(Node), list_to_integer(MiB));
run("monitor", [Node]) -> check_monitor(node_atom(Node));
run("link", [Node, Creation]) ->
	check_link(node_atom(Node), list_to_integer(Creation));
run("link_hold", [Node]) -> check_link_hold(node_atom(Node));
run("link_exits", [Node, Held, Want, Total]) ->
	check_link_exits(node_atom(Node), node_atom(Held),
			 list_to_integer(Want), list_to_integer(Total));
run("call_timeout", [Node]) -> check_call_timeout(node_atom(Node));
run("spawn", [Node]) -> check_spawn(node_atom(Node));
run("nodes", [Node]) -> check_nodes(node_atom(Node));
run("watch", [Node, File, Seconds]) ->
	watch(node_atom(Node), File, list_to_integer(Seconds));
run("raw", [Mode, Host, Port, Node, Cookie, OptFile]) ->
	kdist_peer_raw(Mode, Host, list_to_integer(Port), node_atom(Node),
		       Cookie, OptFile);
run("idle", [Host, Port, Node, OptFile]) ->
	check_idle(Host, list_to_integer(Port), node_atom(Node), OptFile);
run("ping_within", [Node, Ms]) ->
	check_ping_within(node_atom(Node), list_to_integer(Ms));
run("stop_drain", [Node, Count, Size]) ->
	check_stop_drain(node_atom(Node), list_to_integer(Count),
			 list_to_integer(Size));
run("hold", [Node, Seconds]) ->
	check_hold(node_atom(Node), list_to_integer(Seconds));
run(Check, Args) ->
	fail("unknown check ~s with arguments ~p", [Check, Args]).

node_atom(Node) -> list_to_atom(Node).

%% --- ping, pang, nodes -----------------------------------------------------

%% Ping with retries: the kdist node may still be finishing its EPMD
%% registration when the first ping goes out.
check_ping(Node) ->
	ping_until(Node, 10).

ping_until(Node, 0) ->
	fail("net_adm:ping(~p) returned pang 10 times", [Node]);
ping_until(Node, Tries) ->
	case net_adm:ping(Node) of
		pong -> ok;
		pang -> timer:sleep(500), ping_until(Node, Tries - 1)
	end.

%% A rejected connection must fail fast, not hang until net_setuptime.
check_pang(Node) ->
	T0 = erlang:monotonic_time(millisecond),
	Result = net_adm:ping(Node),
	Ms = erlang:monotonic_time(millisecond) - T0,
	Result =:= pang orelse fail("ping ~p returned ~p, expected pang", [Node, Result]),
	Ms < 15000 orelse fail("pang from ~p took ~b ms", [Node, Ms]),
	lists:member(Node, nodes(connected)) andalso
		fail("~p is in nodes(connected) after pang", [Node]),
	ok.

%% One ping, no retries: it must return pong within Ms milliseconds.
check_ping_within(Node, Ms) ->
	T0 = erlang:monotonic_time(millisecond),
	Result = net_adm:ping(Node),
	Took = erlang:monotonic_time(millisecond) - T0,
	io:format("kdist_peer: ping ~p returned ~p in ~b ms~n", [Node, Result, Took]),
	Result =:= pong orelse fail("ping ~p returned ~p after ~b ms", [Node, Result, Took]),
	Took =< Ms orelse fail("ping ~p took ~b ms, limit ~b ms", [Node, Took, Ms]),
	ok.

check_nodes(Node) ->
	check_ping(Node),
	lists:member(Node, nodes()) orelse
		fail("nodes() = ~p does not list ~p", [nodes(), Node]),
	ok.

%% --- echo ------------------------------------------------------------------

echo_terms() ->
	Big = crypto:strong_rand_bytes(1024 * 1024),
	[ok, '', 'ünïcødé_атом', '原子', 0, -1, 255, 256, 1 bsl 27, -(1 bsl 27),
	 1 bsl 64, -(1 bsl 200), 3.14159, -0.0, 1.0e300, <<>>, <<1, 2, 3>>,
	 <<1:1, 0:2>>, Big, "string", [], [1, 2 | improper],
	 {}, {a, {b, {c, {d, {e, [f, {g}]}}}}}, lists:seq(1, 1000),
	 #{}, #{a => 1, <<"k">> => [v], {t} => #{nested => map}},
	 maps:from_list([{I, I * I} || I <- lists:seq(1, 100)]),
	 self(), make_ref(), erlang:make_ref(), list_to_tuple(lists:seq(1, 300)),
	 {self(), make_ref(), <<"mixed">>, 'ατομ', 2.5}].

%% Every term must come back from {echo, Node} equal to what was sent, in
%% order, and the pid and reference must still be ours.
check_echo(Node) ->
	check_ping(Node),
	Terms = echo_terms(),
	lists:foreach(fun(T) -> {echo, Node} ! {self(), {echoed, T}} end, Terms),
	lists:foreach(fun(T) -> expect_echo(Node, T) end, Terms),
	Ref = make_ref(),
	{echo, Node} ! {self(), {mine, self(), Ref}},
	receive
		{mine, Pid, Ref} when Pid =:= self() -> ok
	after ?REPLY_MS -> fail("pid and reference did not come back", [])
	end.

expect_echo(Node, T) ->
	receive
		{echoed, T} -> ok;
		{echoed, Other} ->
			fail("echo on ~p returned ~s, expected ~s",
			     [Node, short(Other), short(T)])
	after ?REPLY_MS ->
		fail("no echo of ~s from ~p within ~b ms", [short(T), Node, ?REPLY_MS])
	end.

short(T) ->
	S = lists:flatten(io_lib:format("~0p", [T])),
	case length(S) > 60 of
		true -> lists:sublist(S, 60) ++ "...";
		false -> S
	end.

%% --- sink ------------------------------------------------------------------

%% Send Count binaries of Size bytes to {sink, Node}; the sink's counters
%% must grow by exactly Count messages and by at least Count * Size bytes
%% (the encoded payload adds a few bytes of framing per message).
check_sink(Node, Count, Size) ->
	check_ping(Node),
	{M0, B0} = sink_stats(Node),
	Payload = crypto:strong_rand_bytes(Size),
	T0 = erlang:monotonic_time(microsecond),
	[{sink, Node} ! Payload || _ <- lists:seq(1, Count)],
	{M1, B1} = sink_wait(Node, M0 + Count, 30),
	Us = max(1, erlang:monotonic_time(microsecond) - T0),
	M1 - M0 =:= Count orelse
		fail("sink counted ~b messages, sent ~b", [M1 - M0, Count]),
	B1 - B0 >= Count * Size orelse
		fail("sink counted ~b bytes, sent ~b payload bytes",
		     [B1 - B0, Count * Size]),
	io:format("kdist_peer: sink ~b x ~b B in ~b ms (~.1f MB/s)~n",
		  [Count, Size, Us div 1000, Count * Size / Us]),
	ok.

%% One message of MiB mebibytes to sink while another process keeps doing
%% small echo round trips: the large one arrives whole (ERTS sends it in
%% fragments once they are negotiated), and every small round trip
%% completes meanwhile.
check_large(Node, MiB) ->
	check_ping(Node),
	{M0, B0} = sink_stats(Node),
	Self = self(),
	Small = spawn_link(fun() -> small_round_trips(Node, Self, []) end),
	Big = binary:copy(<<"0123456789abcdef">>, MiB * 65536),
	T0 = erlang:monotonic_time(millisecond),
	{sink, Node} ! Big,
	{M1, B1} = sink_wait(Node, M0 + 1, 60),
	Ms = erlang:monotonic_time(millisecond) - T0,
	Small ! stop,
	Times = receive {round_trips, L} -> L after ?REPLY_MS -> [] end,
	M1 - M0 =:= 1 orelse fail("sink counted ~b messages, sent 1", [M1 - M0]),
	B1 - B0 >= byte_size(Big) orelse
		fail("sink counted ~b bytes, sent ~b", [B1 - B0, byte_size(Big)]),
	Times =/= [] orelse fail("no small round trip completed during the transfer", []),
	lists:member(timeout, Times) andalso
		fail("a small round trip got no echo within ~b ms", [?REPLY_MS]),
	io:format("kdist_peer: large ~b MiB in ~b ms; ~b small round trips, max ~b us~n",
		  [MiB, Ms, length(Times), lists:max(Times)]),
	ok.

small_round_trips(Node, Parent, Acc) ->
	receive stop -> Parent ! {round_trips, Acc}
	after 10 ->
		T = erlang:monotonic_time(microsecond),
		{echo, Node} ! {self(), small},
		R = receive small -> erlang:monotonic_time(microsecond) - T
		    after ?REPLY_MS -> timeout
		    end,
		small_round_trips(Node, Parent, [R | Acc])
	end.

sink_stats(Node) ->
	{sink, Node} ! {self(), stats},
	receive
		{sink_stats, M, B} -> {M, B}
	after ?REPLY_MS -> fail("no sink_stats from ~p", [Node])
	end.

%% The stats request travels behind the data on the same connection, but
%% allow the sink to lag: ask again until the count is reached.
sink_wait(Node, Want, 0) ->
	{M, B} = sink_stats(Node),
	M >= Want orelse fail("sink counted ~b messages, expected ~b", [M, Want]),
	{M, B};
sink_wait(Node, Want, Tries) ->
	case sink_stats(Node) of
		{M, B} when M >= Want -> {M, B};
		_ -> timer:sleep(200), sink_wait(Node, Want, Tries - 1)
	end.

%% --- monitors --------------------------------------------------------------

%% A monitor on a registered name that exists stays quiet; one on a missing
%% name fires at once with noproc.
check_monitor(Node) ->
	check_ping(Node),
	Live = erlang:monitor(process, {echo, Node}),
	Missing = erlang:monitor(process, {no_such_name, Node}),
	receive
		{'DOWN', Missing, process, {no_such_name, Node}, noproc} -> ok;
		{'DOWN', Missing, process, _, Other} ->
			fail("DOWN for a missing name had reason ~p, expected noproc", [Other])
	after ?REPLY_MS ->
		fail("no DOWN noproc within ~b ms for a monitor on a missing name",
		     [?REPLY_MS])
	end,
	receive
		{'DOWN', Live, process, _, Why} ->
			fail("monitor on {echo, ~p} fired with ~p", [Node, Why])
	after 1000 -> ok
	end,
	true = erlang:demonitor(Live, [flush]),
	%% The link must still carry messages after the demonitor.
	{echo, Node} ! {self(), after_demonitor},
	receive after_demonitor -> ok
	after ?REPLY_MS -> fail("echo silent after demonitor", [])
	end.

%% --- links -----------------------------------------------------------------

%% Build the pid <Node.Id.Serial> of the kdist incarnation with Creation,
%% as NEW_PID_EXT (tag 88), so links can target its mailboxes.
make_pid(Node, Id, Serial, Creation) ->
	Name = atom_to_binary(Node, utf8),
	binary_to_term(<<131, 88, 119, (byte_size(Name)), Name/binary,
			 Id:32, Serial:32, Creation:32>>).

%% Links to pids of the kdist node: one that names no mailbox must end at
%% once with {'EXIT', Pid, noproc}; the live mailboxes are the pids that
%% stay linked. unlink/1 on a live one must return at once, and afterwards
%% the echo service must still answer (the unlink handshake completed).
check_link(Node, Creation) ->
	check_ping(Node),
	Candidates = [make_pid(Node, Id, 0, Creation) || Id <- lists:seq(0, 63)],
	lists:foreach(fun link/1, Candidates),
	Dead = collect_noproc([], 2000),
	Live = Candidates -- Dead,
	Dead =/= [] orelse fail("no {'EXIT', Pid, noproc} for links to 64 pids", []),
	Live =/= [] orelse fail("all 64 linked pids exited; no mailbox found", []),
	[First | _] = Live,
	T0 = erlang:monotonic_time(millisecond),
	true = unlink(First),
	Ms = erlang:monotonic_time(millisecond) - T0,
	Ms < 1000 orelse fail("unlink(~p) took ~b ms", [First, Ms]),
	%% A second link and unlink on the same pid reuse the unlink id
	%% handshake; neither may hang nor drop the connection.
	true = link(First),
	true = unlink(First),
	{echo, Node} ! {self(), after_unlink},
	receive after_unlink -> ok
	after ?REPLY_MS -> fail("echo silent after unlink of ~p", [First])
	end,
	lists:member(Node, nodes(connected)) orelse
		fail("connection to ~p dropped after unlink", [Node]),
	io:format("kdist_peer: live mailboxes ~p~n", [Live]),
	ok.

collect_noproc(Acc, Ms) ->
	receive
		{'EXIT', Pid, noproc} -> collect_noproc([Pid | Acc], Ms);
		{'EXIT', Pid, Other} -> fail("link to ~p ended with ~p", [Pid, Other])
	after Ms -> Acc
	end.

%% {SinkPid, [{From, Reason}]}: the sink's pid and the exit messages it got.
sink_exits(Node) ->
	{sink, Node} ! {self(), exits},
	receive
		{sink_exits, Pid, Exits} -> {Pid, Exits}
	after ?REPLY_MS -> fail("no sink_exits from ~p", [Node])
	end.

%% Link two processes to the sink and monitor it from a third, then return,
%% which halts this node with the links in place. An echo round trip after
%% the links makes sure the kdist node has them before the halt.
check_link_hold(Node) ->
	check_ping(Node),
	{Sink, _} = sink_exits(Node),
	Self = self(),
	Hold = fun(Set) ->
		spawn(fun() ->
			Set(Sink),
			Self ! {held, self()},
			receive stop -> ok end
		end)
	end,
	Holders = [Hold(fun link/1), Hold(fun link/1),
		   Hold(fun(P) -> erlang:monitor(process, P) end)],
	[receive {held, H} -> ok after ?REPLY_MS -> fail("~p did not link", [H]) end
	 || H <- Holders],
	{echo, Node} ! {self(), linked},
	receive linked -> ok
	after ?REPLY_MS -> fail("echo silent after the links", [])
	end,
	io:format("kdist_peer: links held from ~s~n", [node()]),
	ok.

%% After node Held halted, the sink must hold exactly Want exits from its
%% processes, each with reason noconnection and from a different process,
%% and Total exits in all; one more second must bring no further exit.
check_link_exits(Node, Held, Want, Total) ->
	check_ping(Node),
	wait_link_exits(Node, Held, Want, 50),
	timer:sleep(1000),
	{_, Exits} = sink_exits(Node),
	From = [{P, R} || {P, R} <- Exits, node(P) =:= Held],
	length(From) =:= Want orelse
		fail("sink got ~b exits from ~p, expected ~b: ~p",
		     [length(From), Held, Want, From]),
	[fail("exit from ~p had reason ~p, expected noconnection", [P, R])
	 || {P, R} <- From, R =/= noconnection],
	length(lists:usort([P || {P, _} <- From])) =:= Want orelse
		fail("the exits from ~p repeat a process: ~p", [Held, From]),
	length(Exits) =:= Total orelse
		fail("sink got ~b exits in all, expected ~b: ~p",
		     [length(Exits), Total, Exits]),
	ok.

wait_link_exits(Node, Held, Want, Tries) ->
	{_, Exits} = sink_exits(Node),
	N = length([P || {P, _} <- Exits, node(P) =:= Held]),
	if
		N >= Want; Tries =< 0 -> ok;
		true -> timer:sleep(100), wait_link_exits(Node, Held, Want, Tries - 1)
	end.

%% --- gen_server-style call -------------------------------------------------

%% echo ignores a '$gen_call' (it expects {Pid, Term}), so the call must
%% exit with timeout after its 1 s timeout, leave no monitor behind and
%% leave the connection usable.
check_call_timeout(Node) ->
	check_ping(Node),
	T0 = erlang:monotonic_time(millisecond),
	Result = try gen_server:call({echo, Node}, hello, 1000) of
		Reply -> {reply, Reply}
	catch
		exit:{timeout, _} -> timeout;
		exit:Other -> {exit, Other}
	end,
	Ms = erlang:monotonic_time(millisecond) - T0,
	Result =:= timeout orelse fail("call to {echo, ~p} returned ~p", [Node, Result]),
	Ms < 3000 orelse fail("call with timeout 1000 took ~b ms", [Ms]),
	{monitors, Mons} = process_info(self(), monitors),
	Mons =:= [] orelse fail("monitors left after the call: ~p", [Mons]),
	%% A call to a missing name must fail with noproc, not time out.
	Missing = try gen_server:call({no_such_name, Node}, hello, 3000) of
		R -> {reply, R}
	catch
		exit:{noproc, _} -> noproc;
		exit:Other2 -> {exit, Other2}
	end,
	Missing =:= noproc orelse fail("call to a missing name returned ~p", [Missing]),
	{echo, Node} ! {self(), after_call},
	receive after_call -> ok
	after ?REPLY_MS -> fail("echo silent after the call timeout", [])
	end.

%% --- spawn -----------------------------------------------------------------

%% kdist runs no Erlang code: spawn requests must get an error reply, and
%% spawn/4 and spawn_monitor/4 must return or raise instead of hanging.
check_spawn(Node) ->
	check_ping(Node),
	ReqId = erlang:spawn_request(Node, erlang, node, [], [{reply, yes}]),
	receive
		{spawn_reply, ReqId, error, Reason} ->
			io:format("kdist_peer: spawn_request error ~p~n", [Reason]);
		{spawn_reply, ReqId, ok, Pid} ->
			fail("spawn_request on ~p returned pid ~p", [Node, Pid])
	after ?REPLY_MS -> fail("no spawn_reply from ~p within ~b ms", [Node, ?REPLY_MS])
	end,
	%% spawn_monitor/4 raises the error of the spawn reply; a 'DOWN'
	%% would be as clean, a hang is not.
	try spawn_monitor(Node, erlang, node, []) of
		{Pid2, Mon} ->
			receive
				{'DOWN', Mon, process, Pid2, Why} ->
					io:format("kdist_peer: spawn_monitor DOWN ~p~n", [Why])
			after ?REPLY_MS -> fail("no DOWN after spawn_monitor on ~p", [Node])
			end
	catch
		error:Error -> io:format("kdist_peer: spawn_monitor error ~p~n", [Error])
	end,
	%% spawn/4 returns a pid that never ran, or raises as above.
	catch spawn(Node, erlang, node, []),
	lists:member(Node, nodes(connected)) orelse
		fail("connection to ~p dropped after the spawn requests", [Node]),
	{echo, Node} ! {self(), after_spawn},
	receive after_spawn -> ok
	after ?REPLY_MS -> fail("echo silent after the spawn requests", [])
	end.

%% --- watch: link state over time -------------------------------------------

%% Connect, then write a line per event to File for Seconds seconds:
%% "up", "down REASON MS" (ms since up). The shell side stops or freezes
%% the kdist node and reads the file. A pid linked beforehand reports its
%% exit reason too, as "exit REASON".
watch(Node, File, Seconds) ->
	ok = net_kernel:monitor_nodes(true, [nodedown_reason]),
	check_ping(Node),
	{ok, Fd} = file:open(File, [write]),
	T0 = erlang:monotonic_time(millisecond),
	io:format(Fd, "up~n", []),
	watch_loop(Node, Fd, T0, T0 + Seconds * 1000).

watch_loop(Node, Fd, T0, End) ->
	Left = End - erlang:monotonic_time(millisecond),
	receive
		{nodedown, Node, Info} ->
			Ms = erlang:monotonic_time(millisecond) - T0,
			io:format(Fd, "down ~0p ~b~n",
				  [proplists:get_value(nodedown_reason, Info), Ms]),
			file:close(Fd),
			ok;
		_ -> watch_loop(Node, Fd, T0, End)
	after max(0, Left) ->
		io:format(Fd, "still-up ~b~n", [length([N || N <- nodes(), N =:= Node])]),
		file:close(Fd),
		ok
	end.

%% --- hold: one link kept up for a while -------------------------------------

%% Echo once, keep the link for Seconds, then echo again: the link must not
%% go down in between (the test changes certificates or files meanwhile).
check_hold(Node, Seconds) ->
	ok = net_kernel:monitor_nodes(true, [nodedown_reason]),
	check_ping(Node),
	hold_echo(Node, before),
	io:format("kdist_peer: hold connected~n"),
	receive
		{nodedown, Node, Info} ->
			fail("link to ~p went down during the hold: ~p", [Node, Info])
	after Seconds * 1000 -> ok
	end,
	hold_echo(Node, 'after'),
	lists:member(Node, nodes(connected)) orelse
		fail("~p is not in nodes(connected) after the hold", [Node]),
	receive
		{nodedown, Node, Info2} ->
			fail("link to ~p went down during the hold: ~p", [Node, Info2])
	after 0 -> ok
	end.

hold_echo(Node, Tag) ->
	{echo, Node} ! {self(), {hold, Tag}},
	receive
		{hold, Tag} -> ok
	after ?REPLY_MS -> fail("no echo of ~p from ~p", [Tag, Node])
	end.

%% --- orderly stop --------------------------------------------------------------

%% The test stops the kdist node while its echo replies are still queued.
%% Sends Count echo requests of Size bytes, prints "stop_drain sent" for
%% the test, then takes replies until the nodedown. They must be 1..K, in
%% order, with no gap; prints K and the nodedown reason for the test to
%% compare with the number of messages kdist says it sent.
check_stop_drain(Node, Count, Size) ->
	ok = net_kernel:monitor_nodes(true, [nodedown_reason]),
	check_ping(Node),
	Pad = binary:copy(<<"x">>, Size),
	[{echo, Node} ! {self(), {seq, N, Pad}} || N <- lists:seq(1, Count)],
	io:format("kdist_peer: stop_drain sent ~b~n", [Count]),
	{Got, Reason} = drain_replies(Node, 0),
	io:format("kdist_peer: stop_drain received ~b, nodedown ~0p~n",
		  [Got, Reason]).

drain_replies(Node, Last) ->
	receive
		{seq, N, _} when N =:= Last + 1 -> drain_replies(Node, N);
		{seq, N, _} -> fail("reply ~b after ~b: a gap or a reorder", [N, Last]);
		{nodedown, Node, Info} ->
			{Last, proplists:get_value(nodedown_reason, Info)}
	after 60000 -> fail("no nodedown within 60 s, ~b replies", [Last])
	end.

%% --- idle sockets during a handshake ----------------------------------------

%% Hold a TCP connection that sends nothing and a TLS connection that never
%% starts the distribution handshake; a real handshake from this node must
%% still complete while both are open.
check_idle(Host, Port, Node, OptFile) ->
	{ok, Tcp} = gen_tcp:connect(Host, Port, [binary, {active, false}]),
	io:format("kdist_peer: idle TCP peer connected~n"),
	%% ssl:connect runs in a helper process with its own deadline, because
	%% its timeout covers only part of the handshake.
	Self = self(),
	spawn_link(fun() ->
		Self ! {tls, ssl:connect(Host, Port, client_opts(OptFile, Host), 5000)},
		receive close -> ok end
	end),
	Tls = receive
		{tls, {ok, Socket}} -> Socket;
		{tls, {error, Why}} ->
			fail("TLS handshake beside an idle TCP peer failed: ~p", [Why])
	after 10000 ->
		fail("TLS handshake beside an idle TCP peer took over 10 s", [])
	end,
	io:format("kdist_peer: idle TLS peer connected~n"),
	T0 = erlang:monotonic_time(millisecond),
	check_ping(Node),
	Ms = erlang:monotonic_time(millisecond) - T0,
	io:format("kdist_peer: ping with two idle peers took ~b ms~n", [Ms]),
	Ms < 5000 orelse fail("handshake took ~b ms beside idle peers", [Ms]),
	ok = gen_tcp:close(Tcp),
	_ = ssl:close(Tls),
	ok.

client_opts(OptFile, Host) ->
	{ok, [Conf]} = file:consult(OptFile),
	{client, Opts} = lists:keyfind(client, 1, Conf),
	[binary, {active, false}, {packet, 4},
	 {server_name_indication, Host} | Opts].

%% --- misbehaving distribution client ----------------------------------------

%% Complete TLS and the distribution handshake by hand as a hidden node,
%% then misbehave according to Mode:
%%   garbage  send a packet that is no distribution message
%%   oversize send a length prefix of 1 GiB and a few bytes
%%   partial  send 1000 bytes of a 100000-byte packet, print "partial sent
%%            by os pid PID" and wait to be killed by the shell
%%   good     send a REG_SEND to echo and expect the reply
%% For the first two, kdist must close the connection within 5 s.
kdist_peer_raw(Mode, Host, Port, Node, Cookie, OptFile) ->
	{ok, S} = ssl:connect(Host, Port, client_opts(OptFile, Host), 5000),
	dist_handshake(S, Node, Cookie),
	ok = ssl:setopts(S, [{packet, raw}]),
	raw_misbehave(Mode, S, Node).

raw_misbehave("good", S, Node) ->
	Self = make_pid(node(), 1, 0, 1),
	Ctrl = term_to_binary({6, Self, '', echo}),
	Msg = term_to_binary({Self, raw_echo}),
	Packet = <<$p, Ctrl/binary, Msg/binary>>,
	ok = ssl:send(S, <<(byte_size(Packet)):32, Packet/binary>>),
	raw_expect_reply(S, Node);
raw_misbehave("garbage", S, Node) ->
	ok = ssl:send(S, <<20:32, "this is no dist msg!">>),
	raw_expect_close(S, Node);
raw_misbehave("oversize", S, Node) ->
	ok = ssl:send(S, <<(1 bsl 30):32, "first bytes of a huge packet">>),
	raw_expect_close(S, Node);
raw_misbehave("partial", S, _Node) ->
	ok = ssl:send(S, <<100000:32, (binary:copy(<<$p>>, 1000))/binary>>),
	io:format("kdist_peer: partial sent by os pid ~s~n", [os:getpid()]),
	timer:sleep(infinity).

%% Read until a non-tick packet arrives; ticks are zero-length packets.
raw_expect_reply(S, Node) ->
	case raw_recv_packet(S, ?REPLY_MS) of
		{ok, <<>>} -> raw_expect_reply(S, Node);
		{ok, <<$p, Rest/binary>>} ->
			{_Ctrl, Used} = binary_to_term(Rest, [used]),
			<<_:Used/binary, Msg/binary>> = Rest,
			case binary_to_term(Msg) of
				raw_echo -> ok;
				Other -> fail("echo over the raw client returned ~p", [Other])
			end;
		{ok, Other} -> fail("unexpected packet ~p from ~p", [Other, Node]);
		{error, Why} -> fail("no echo reply on the raw client: ~p", [Why])
	end.

raw_recv_packet(S, Timeout) ->
	case ssl:recv(S, 4, Timeout) of
		{ok, <<0:32>>} -> {ok, <<>>};
		{ok, <<Len:32>>} -> ssl:recv(S, Len, Timeout);
		{error, Why} -> {error, Why}
	end.

raw_expect_close(S, Node) ->
	case ssl:recv(S, 0, 5000) of
		{error, closed} -> ok;
		{error, timeout} -> fail("~p kept the connection open for 5 s", [Node]);
		{ok, _Ticks} -> raw_expect_close(S, Node);
		{error, Other} -> io:format("kdist_peer: close reason ~p~n", [Other])
	end.

dist_handshake(S, Node, Cookie) ->
	send_name(S),
	recv_status(S, Node),
	{Challenge, PeerFlags} = recv_challenge(S, Node),
	Mine = rand:uniform(16#ffffffff),
	send_challenge_reply(S, Cookie, Challenge, Mine),
	recv_challenge_ack(S, Cookie, Mine),
	io:format("kdist_peer: raw handshake done, peer flags ~.16#~n", [PeerFlags]).

send_name(S) ->
	Name = atom_to_binary(node(), utf8),
	ok = ssl:send(S, <<$N, ?RAW_FLAGS:64, 1:32, (byte_size(Name)):16, Name/binary>>).

recv_status(S, Node) ->
	case ssl:recv(S, 0, ?REPLY_MS) of
		{ok, <<$s, "ok", _/binary>>} -> ok;
		{ok, Other} -> fail("status from ~p was ~p, expected sok", [Node, Other]);
		{error, Why} -> fail("no status from ~p: ~p", [Node, Why])
	end.

recv_challenge(S, Node) ->
	case ssl:recv(S, 0, ?REPLY_MS) of
		{ok, <<$N, Flags:64, Challenge:32, _Creation:32, _/binary>>} ->
			{Challenge, Flags};
		{ok, Other} -> fail("challenge from ~p was ~p", [Node, Other]);
		{error, Why} -> fail("no challenge from ~p: ~p", [Node, Why])
	end.

send_challenge_reply(S, Cookie, Challenge, Mine) ->
	Digest = erlang:md5([Cookie, integer_to_list(Challenge)]),
	ok = ssl:send(S, <<$r, Mine:32, Digest/binary>>).

recv_challenge_ack(S, Cookie, Mine) ->
	Want = erlang:md5([Cookie, integer_to_list(Mine)]),
	case ssl:recv(S, 0, ?REPLY_MS) of
		{ok, <<$a, Want/binary>>} -> ok;
		{ok, <<$a, _/binary>>} -> fail("challenge_ack digest is wrong", []);
		{ok, Other} -> fail("challenge_ack was ~p", [Other]);
		{error, Why} -> fail("no challenge_ack: ~p", [Why])
	end.

%% --- serve: the long-lived erl node ----------------------------------------

%% Register inbox (appends each message, printed with ~0tp, to InboxFile),
%% plus echo and sink with the kdist node's contract; print "serving" when
%% ready and run until the node is stopped.
serve([InboxFile]) ->
	%% The inbox opens the file itself: a file belongs to the process that
	%% opens it, and the one running serve/1 ends when it returns.
	register(inbox, spawn(fun() ->
		{ok, Fd} = file:open(InboxFile, [write, {encoding, utf8}]),
		inbox_loop(Fd)
	end)),
	register(echo, spawn(fun echo_loop/0)),
	register(sink, spawn(fun() ->
		process_flag(trap_exit, true),
		sink_loop(0, 0, [])
	end)),
	io:format("kdist_peer: serving~n"),
	ok.

inbox_loop(Fd) ->
	receive
		Msg ->
			io:format(Fd, "~0tp~n", [Msg]),
			inbox_loop(Fd)
	end.

echo_loop() ->
	receive
		{Pid, Term} when is_pid(Pid) -> Pid ! Term;
		_ -> ok
	end,
	echo_loop().

sink_loop(Msgs, Bytes, Exits) ->
	receive
		{Pid, stats} when is_pid(Pid) ->
			Pid ! {sink_stats, Msgs, Bytes},
			sink_loop(Msgs, Bytes, Exits);
		{Pid, exits} when is_pid(Pid) ->
			Pid ! {sink_exits, self(), lists:reverse(Exits)},
			sink_loop(Msgs, Bytes, Exits);
		Msg ->
			Kept = case Msg of
				{'EXIT', From, Reason} -> [{From, Reason} | Exits];
				_ -> Exits
			end,
			sink_loop(Msgs + 1, Bytes + byte_size(term_to_binary(Msg)), Kept)
	end.

%% --- soak: the erl side of tests/tools/seqpeer soak --------------------------

%% Register seqack, which sends {tack, N} back for each {tseq, From, N},
%% and start a sender that streams {eseq, OsPid, N}, N = 1, 2, ..., to
%% {soak, KdistNode}. The sender sends only while connected: after a
%% nodedown it connects again and goes on with the next N, so the numbers
%% lost are those sent into the link that went down.
soak([KdistNode]) ->
	Node = node_atom(KdistNode),
	register(seqack, spawn(fun seqack_loop/0)),
	Inc = list_to_integer(os:getpid()),
	spawn(fun() -> eseq_connect(Node, Inc, 1) end),
	io:format("kdist_peer: soak serving~n"),
	ok.

seqack_loop() ->
	receive
		{tseq, From, N} when is_pid(From) -> From ! {tack, N};
		_ -> ok
	end,
	seqack_loop().

eseq_connect(Node, Inc, N) ->
	case net_kernel:connect_node(Node) of
		true ->
			erlang:monitor_node(Node, true),
			eseq_send(Node, Inc, N);
		_ ->
			timer:sleep(100),
			eseq_connect(Node, Inc, N)
	end.

eseq_send(Node, Inc, N) ->
	lists:foreach(fun(I) -> {soak, Node} ! {eseq, Inc, I} end,
		      lists:seq(N, N + 49)),
	receive
		{nodedown, Node} ->
			timer:sleep(100),
			eseq_connect(Node, Inc, N + 50)
	after 5 -> eseq_send(Node, Inc, N + 50)
	end.
