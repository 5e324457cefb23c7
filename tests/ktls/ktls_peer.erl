%% Erlang side of the kernel TLS end-to-end tests (tests/ktls/e2e.sh).
%%
%% main(["traffic", InboxFile | KdistNodes]):
%%     for each kdist node: ping, echo round trips of terms up to 1 MiB,
%%     sequence-numbered messages echoed back in order (KDIST_KTLS_SEQ,
%%     default 1000), and messages of 1 KiB counted by the sink
%%     (KDIST_KTLS_SINK, default 2000). Prints one line per node and
%%     "ktls_peer: serving", then writes every message its registered
%%     process `inbox` gets to InboxFile, one ~p line each, until halted.
%% main(["rekey", KdistNode, Count, Size]):
%%     sends Count sequence-numbered binaries of Size bytes to the echo
%%     process and checks they come back complete and in order. The TLS
%%     options file sets key_update_at or renegotiate_at low, so the keys
%%     change many times on the way. Prints "ktls_peer: rekey ok N" or the
%%     first message that went missing; a stalled link ends the check
%%     after 60 s without a reply.
%% main(["sink", KdistNode, Count, Size]):
%%     sends Count random binaries of Size bytes to the sink and waits
%%     until it has counted them all (tests/ktls/count.sh).
%% Exit status: 0 when every check passed, 1 when one failed, 2 when the
%% watchdog fired.
-module(ktls_peer).
-export([main/1]).

-define(REPLY_MS, 60000).

main(["traffic", File | Nodes]) ->
	watchdog(300),
	register(inbox, self()),
	Results = [traffic(list_to_atom(N)) || N <- Nodes],
	case lists:all(fun(R) -> R =:= ok end, Results) of
		true ->
			io:format("ktls_peer: serving~n"),
			{ok, Fd} = file:open(File, [append]),
			inbox(Fd);
		false ->
			halt(1)
	end;
main(["sink", Node, Count, Size]) ->
	watchdog(600),
	K = list_to_atom(Node),
	pong = net_adm:ping(K),
	R = try sink(K, list_to_integer(Count), list_to_integer(Size))
	    catch C:E -> say("sink failed: ~p:~0p", [C, E]), failed
	    end,
	halt(case R of ok -> 0; _ -> 1 end);
main(["rekey", Node, Count, Size]) ->
	watchdog(300),
	R = rekey(list_to_atom(Node), list_to_integer(Count),
		  list_to_integer(Size)),
	halt(case R of ok -> 0; _ -> 1 end).

watchdog(Seconds) ->
	spawn(fun() ->
		      timer:sleep(Seconds * 1000),
		      io:format("ktls_peer: watchdog: no result after ~b s~n",
				[Seconds]),
		      halt(2)
	      end).

say(Fmt, Args) ->
	io:format("ktls_peer: " ++ Fmt ++ "~n", Args).

inbox(Fd) ->
	receive
		Msg ->
			io:format(Fd, "~0p~n", [Msg]),
			inbox(Fd)
	end.

%% --- traffic -----------------------------------------------------------------

%% Message counts; the VM lowers them because emulation is slow.
env_int(Name, Default) ->
	case os:getenv(Name) of
		false -> Default;
		V -> list_to_integer(V)
	end.

traffic(Node) ->
	try
		pong = net_adm:ping(Node),
		echo_big(Node),
		echo_seq(Node, env_int("KDIST_KTLS_SEQ", 1000)),
		sink(Node, env_int("KDIST_KTLS_SINK", 2000), 1024),
		say("traffic ~p ok", [Node]),
		ok
	catch
		C:R ->
			say("traffic ~p failed: ~p:~0p", [Node, C, R]),
			failed
	end.

echo_big(Node) ->
	Terms = [crypto:strong_rand_bytes(S) ||
		    S <- [1, 100, 16383, 16384, 16385, 65536, 1024 * 1024]],
	[{echo, Node} ! {self(), {big, T}} || T <- Terms],
	[receive {big, T} -> ok after ?REPLY_MS -> error({no_echo, byte_size(T)})
	 end || T <- Terms],
	ok.

%% Messages 1..N go out without waiting; the replies must come back in
%% the order sent, each with its own payload.
echo_seq(Node, N) ->
	[{echo, Node} ! {self(), {seq, I, payload(I, 512)}} || I <- lists:seq(1, N)],
	expect_seq(1, N, 512).

expect_seq(I, N, _Size) when I > N ->
	ok;
expect_seq(I, N, Size) ->
	receive
		{seq, I, P} ->
			P =:= payload(I, Size) orelse error({corrupt, I}),
			expect_seq(I + 1, N, Size);
		{seq, J, _} ->
			error({out_of_order, {expected, I}, {got, J}});
		{nodedown, Node} ->
			error({nodedown, Node, {waiting_for, I}})
	after ?REPLY_MS ->
		error({missing, I, of_, N})
	end.

%% A payload that depends on its sequence number, so a swapped or
%% damaged message cannot pass.
payload(I, Size) ->
	Seed = crypto:hash(sha256, integer_to_binary(I)),
	binary:part(binary:copy(Seed, Size div 32 + 1), 0, Size).

sink(Node, Count, Size) ->
	{M0, _} = sink_stats(Node),
	P = crypto:strong_rand_bytes(Size),
	[{sink, Node} ! P || _ <- lists:seq(1, Count)],
	sink_wait(Node, M0 + Count, 3000).

sink_stats(Node) ->
	{sink, Node} ! {self(), stats},
	receive {sink_stats, M, B} -> {M, B}
	after ?REPLY_MS -> error(no_sink_stats)
	end.

%% The sink counts for every connection of its node, and peers run side
%% by side: its count must reach ours, and each connection's own count
%% is in the node's "down" line.
sink_wait(Node, Want, Tries) ->
	case sink_stats(Node) of
		{M, _} when M >= Want -> ok;
		{M, _} when Tries =:= 0 -> error({sink_count, M, Want});
		_ -> timer:sleep(100), sink_wait(Node, Want, Tries - 1)
	end.

%% --- rekey -------------------------------------------------------------------

rekey(Node, Count, Size) ->
	pong = net_adm:ping(Node),
	%% A link the node closes ends the check at once, not after a timeout.
	erlang:monitor_node(Node, true),
	Self = self(),
	%% The sender runs apart so that replies are read while it sends.
	spawn_link(fun() ->
		[{echo, Node} ! {Self, {seq, I, payload(I, Size)}} ||
		    I <- lists:seq(1, Count)]
	end),
	try expect_seq(1, Count, Size) of
		ok ->
			say("rekey ok ~b messages of ~b bytes in order", [Count, Size]),
			ok
	catch
		error:Why ->
			say("rekey failed: ~0p; connected: ~p", [Why, nodes(hidden) ++ nodes()]),
			failed
	end.
