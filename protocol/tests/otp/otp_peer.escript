#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%%
%% An Erlang/OTP `diameter` peer for the interop tests in protocol/tests/integration/otp.rs:
%% an independent Diameter stack talking to ours over TCP on 127.0.0.1.
%%
%%   escript otp_peer.escript client DICT OUTDIR PORT SESSIONS UPDATES
%%       connects to 127.0.0.1:PORT, sends SESSIONS concurrent Credit-Control sessions of
%%       INITIAL, UPDATES x UPDATE (MSCC with Used-Service-Unit) and TERMINATION, checks each
%%       CCA, waits until its watchdog has exchanged a DWR/DWA with us, then removes the
%%       transport (DPR) and prints `RESULT ok answers=N ...`.
%%   escript otp_peer.escript server DICT OUTDIR
%%       listens on 127.0.0.1 port 0, prints `LISTENING port=N`, answers every CCR with a
%%       CCA 2001 granting units in each MSCC, prints `DWR recv=N` whenever a DWR from the
%%       peer is counted, and after the peer has gone (DPR) prints `RESULT ok requests=N ...`.
%%   escript otp_peer.escript acct-client DICT OUTDIR ACCT_DICT PORT SESSIONS INTERIMS
%%       an accounting client (Acct-Application-Id 3, the only application in its CER) of
%%       the gateway's access leg (DESIGN.md section 3): connects to 127.0.0.1:PORT, runs
%%       SESSIONS concurrent sessions of ACR START (record 0, Subscription-Id END_USER_E164
%%       4917000000NN, Rating-Group 1), INTERIMS x ACR INTERIM (Used-Service-Unit CC-Time
%%       30) and ACR STOP (CC-Time 10, Termination-Cause LOGOUT), checks each ACA (2001,
%%       Session-Id, Accounting-Record-Type and -Number echoed), answers any ASR with ASA
%%       2001 and counts them, waits for a DWR/DWA exchange, removes the transport (DPR)
%%       and prints `RESULT ok acas=N aca_2001=N asr_recv=N ...`.
%%
%% DICT is the RFC 4006 dictionary (shared/otp/dcca_rfc4006.dia); it is compiled at start
%% (what diameterc does, then compile:file) into OUTDIR, a scratch directory the caller
%% owns. ACCT_DICT (tests/otp/acct_rfc4006.dia) is base accounting with the RFC 4006 AVPs
%% the access leg reads, inherited from the compiled DICT; it is compiled after it.
%% Machine-readable lines on stdout start with EVENT, STATS, DWR, LISTENING, RESULT or
%% FAIL; OTP's own log goes to stderr. Exit status 0 only when everything checked out.

-mode(compile).

-include_lib("diameter/include/diameter.hrl").

-export([peer_up/3, peer_down/3, pick_peer/4, prepare_request/3, prepare_retransmit/3,
         handle_answer/4, handle_error/4, handle_request/3]).

-define(SVC, otp_interop).
-define(REALM, "example.org").
-define(CLIENT_HOST, "otp-client.example.org").
-define(SERVER_HOST, "otp-server.example.org").
-define(ACCT_HOST, "otp-acct-client.example.org").
-define(CC_APP, 4).
-define(ACCT_APP, 3).
-define(TABLE, otp_interop_counters).
%% The whole run, whatever happens: never outlive a test that was killed.
-define(LIFETIME_MS, 60000).

%% ---------------------------------------------------------------------------------------
%% Entry

main(["client", Dict, OutDir, Port, Sessions, Updates]) ->
    setup(Dict, OutDir),
    run_client(list_to_integer(Port), list_to_integer(Sessions), list_to_integer(Updates));
main(["server", Dict, OutDir]) ->
    setup(Dict, OutDir),
    run_server();
main(["acct-client", Dict, OutDir, AcctDict, Port, Sessions, Interims]) ->
    setup(Dict, OutDir),
    filelib:is_regular(AcctDict) orelse fail("no accounting dictionary ~s", [AcctDict]),
    compile_dictionary(AcctDict, OutDir, acct_rfc4006),
    run_acct_client(list_to_integer(Port), list_to_integer(Sessions),
                    list_to_integer(Interims));
main(Args) ->
    io:format(standard_error,
              "usage: otp_peer.escript client DICT OUTDIR PORT SESSIONS UPDATES~n"
              "       otp_peer.escript server DICT OUTDIR~n"
              "       otp_peer.escript acct-client DICT OUTDIR ACCT_DICT PORT SESSIONS "
              "INTERIMS~n(got ~p)~n", [Args]),
    halt(64).

setup(Dict, OutDir) ->
    %% OTP's log (and diameter's warnings) on stderr, so stdout stays machine-readable.
    _ = logger:update_handler_config(default, config, #{type => standard_error}),
    Self = self(),
    spawn(fun() ->
                  timer:sleep(?LIFETIME_MS),
                  fail(Self, "gave up after ~b ms", [?LIFETIME_MS])
          end),
    case code:which(diameter) of
        non_existing ->
            fail("the diameter application is not installed: install erlang-diameter "
                 "(scripts/test does)", []);
        _ ->
            ok
    end,
    compile_dictionary(Dict, OutDir, dcca_rfc4006),
    ets:new(?TABLE, [public, named_table, set]),
    start_stats(),
    ok = diameter:start().

%% What `diameterc -i DIR -o DIR DICT` then `erlc -o DIR DIR/Module.erl` do, DIR being
%% OUTDIR/dict; Module is the dictionary's @name. A dictionary compiled earlier can be
%% @inherits'ed by a later one (DIR is on the include and code paths).
%%
%% Not OUTDIR itself: the code server names a code path entry by its directory name up to
%% the first "-", so once a scratch directory like /tmp/diameter-otp-... is on the code path,
%% code:lib_dir(diameter) answers it, and the next generated module's
%% -include_lib("diameter/include/diameter.hrl") is not found.
compile_dictionary(Dict, OutDir, Module) ->
    Dir = filename:join(OutDir, "dict"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    case diameter_make:codec(Dict, [{outdir, Dir}, {include, Dir}]) of
        ok -> ok;
        Error -> fail("diameter_make:codec(~p): ~p", [Dict, Error])
    end,
    Source = filename:join(Dir, atom_to_list(Module) ++ ".erl"),
    case compile:file(Source, [{outdir, Dir}, return_errors]) of
        {ok, Module} -> ok;
        Other -> fail("compile:file(~p): ~p", [Source, Other])
    end,
    true = code:add_patha(Dir),
    {module, Module} = code:load_file(Module).

service(Host) ->
    Callbacks = {module, ?MODULE},
    [{'Origin-Host', Host},
     {'Origin-Realm', ?REALM},
     {'Vendor-Id', 193},
     {'Product-Name', "OTP diameter interop peer"},
     {'Origin-State-Id', diameter:origin_state_id()},
     {'Auth-Application-Id', [?CC_APP]},
     {'Acct-Application-Id', [3]},
     {decode_format, map},
     {string_decode, false},
     {application, [{alias, cc}, {dictionary, dcca_rfc4006}, Callbacks]},
     {application, [{alias, acct}, {dictionary, diameter_gen_base_accounting}, Callbacks]}].

%% ---------------------------------------------------------------------------------------
%% Client: OTP connects to our server.

run_client(Port, Sessions, Updates) ->
    ok = diameter:start_service(?SVC, service(?CLIENT_HOST)),
    true = diameter:subscribe(?SVC),
    Transport = [{transport_module, diameter_tcp},
                 {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port},
                                     {ip, {127, 0, 0, 1}}]},
                 {watchdog_timer, 6000},
                 {connect_timer, 30000}],
    {ok, Ref} = diameter:add_transport(?SVC, {connect, Transport}),
    Peer = wait_event(fun({up, R, _, _, _}) -> R == Ref; (_) -> false end, 10000, "peer up"),
    {up, Ref, {_, Caps}, _, _} = Peer,
    io:format("EVENT up peer=~s product=~s~n",
              [element(2, Caps#diameter_caps.origin_host),
               element(2, Caps#diameter_caps.product_name)]),
    Started = erlang:monotonic_time(millisecond),
    Parent = self(),
    Workers = [spawn_link(fun() -> Parent ! {self(), session(S, Updates)} end)
               || S <- lists:seq(1, Sessions)],
    Results = [receive {W, R} -> R after 30000 -> {error, {session_timeout, W}} end
               || W <- Workers],
    Elapsed = erlang:monotonic_time(millisecond) - Started,
    case [E || {error, E} <- Results] of
        [] -> ok;
        Errors -> fail("credit-control sessions failed: ~p", [Errors])
    end,
    Answers = lists:sum([N || {ok, N} <- Results]),
    io:format("EVENT batch answers=~b elapsed_ms=~b~n", [Answers, Elapsed]),
    %% Tw 6000 is jittered by OTP to 4-8 s: a DWR goes out after that much silence.
    Watchdog = wait_stats(fun(S) -> count(S, dwr_sent) >= 1 andalso count(S, dwa_recv) >= 1 end,
                          14000),
    print_stats(Watchdog),
    State = watchdog_state(),
    io:format("EVENT watchdog state=~p~n", [State]),
    ok = diameter:remove_transport(?SVC, Ref),
    wait_event(fun({down, R, _, _}) -> R == Ref;
                  ({watchdog, R, _, {_, down}, _}) -> R == Ref;
                  (_) -> false
               end, 8000, "peer down after DPR"),
    Final = stats(),
    print_stats(Final),
    (count(Final, dpa_recv) >= 1) orelse fail("no DPA counted after DPR: ~p", [Final]),
    ok = diameter:stop_service(?SVC),
    io:format("RESULT ok answers=~b cca_2001=~b dwr_sent=~b dwa_recv=~b dwa_2001=~b dwr_recv=~b "
              "dpr_sent=~b dpa_recv=~b dpa_2001=~b watchdog=~p errors=~b~n",
              [Answers, count(Final, cca_recv_2001), count(Final, dwr_sent),
               count(Final, dwa_recv), count(Final, dwa_recv_2001), count(Final, dwr_recv),
               count(Final, dpr_sent), count(Final, dpa_recv), count(Final, dpa_recv_2001),
               State, errors()]),
    halt(0).

%% One session: INITIAL, Updates x UPDATE, TERMINATION, strictly in order.
session(N, Updates) ->
    SessionId = iolist_to_binary(diameter:session_id(?CLIENT_HOST)),
    Steps = [{1, 0}] ++ [{2, U} || U <- lists:seq(1, Updates)] ++ [{3, Updates + 1}],
    try
        lists:foreach(fun({Type, Number}) -> credit_control(N, SessionId, Type, Number) end,
                      Steps),
        {ok, length(Steps)}
    catch
        throw:Reason -> {error, Reason}
    end.

credit_control(N, SessionId, Type, Number) ->
    Mscc0 = #{'Rating-Group' => 10},
    Mscc = case Type of
               1 -> Mscc0#{'Requested-Service-Unit' => #{}};
               2 -> Mscc0#{'Requested-Service-Unit' => #{},
                           'Used-Service-Unit' => [#{'CC-Total-Octets' => 1000 * Number,
                                                     'CC-Time' => 10}]};
               3 -> Mscc0#{'Used-Service-Unit' => [#{'CC-Total-Octets' => 500,
                                                     'CC-Time' => 5}]}
           end,
    Ccr0 = #{'Session-Id' => SessionId,
             'Auth-Application-Id' => ?CC_APP,
             'Service-Context-Id' => <<"32251@3gpp.org">>,
             'CC-Request-Type' => Type,
             'CC-Request-Number' => Number,
             'Event-Timestamp' => calendar:universal_time(),
             'Subscription-Id' =>
                 [#{'Subscription-Id-Type' => 0,
                    'Subscription-Id-Data' => list_to_binary(io_lib:format("4917000~5..0b", [N]))}],
             'Multiple-Services-Indicator' => 1,
             'Multiple-Services-Credit-Control' => [Mscc]},
    Ccr = case Type of
              3 -> Ccr0#{'Termination-Cause' => 1};
              _ -> Ccr0
          end,
    case diameter:call(?SVC, cc, ['CCR' | Ccr], [{timeout, 5000}]) of
        {ok, ['CCA' | Cca]} ->
            check_cca(SessionId, Type, Number, Cca);
        {error, {errors, Errors, Msg}} ->
            error_count(),
            throw({cca_decode_errors, Number, Errors, Msg});
        {error, {answer_message, Msg}} ->
            error_count(),
            throw({error_answer, Number, Msg});
        Other ->
            error_count(),
            throw({call_failed, Number, Other})
    end.

check_cca(SessionId, Type, Number, Cca) ->
    Expect = [{'Session-Id', SessionId}, {'Result-Code', 2001}, {'CC-Request-Type', Type},
              {'CC-Request-Number', Number}, {'Auth-Application-Id', ?CC_APP}],
    Wrong = [{K, V, maps:get(K, Cca, missing)} || {K, V} <- Expect, maps:get(K, Cca, missing) /= V],
    %% Inside a Grouped AVP, diameter's map format keeps an optional AVP as a list [Value].
    Granted = [G || #{'Granted-Service-Unit' := [G]} <- maps:get('Multiple-Services-Credit-Control',
                                                                   Cca, [])],
    if
        Wrong /= [] ->
            error_count(),
            throw({wrong_cca, Number, Wrong, Cca});
        Type /= 3, Granted == [] ->
            error_count(),
            throw({no_granted_service_unit, Number, Cca});
        true ->
            ok
    end.

%% ---------------------------------------------------------------------------------------
%% Accounting client: OTP drives the gateway's access leg (Acct-Application-Id 3).

acct_service() ->
    [{'Origin-Host', ?ACCT_HOST},
     {'Origin-Realm', ?REALM},
     {'Vendor-Id', 193},
     {'Product-Name', "OTP diameter interop accounting client"},
     {'Origin-State-Id', diameter:origin_state_id()},
     {'Acct-Application-Id', [?ACCT_APP]},
     {decode_format, map},
     {string_decode, false},
     {application, [{alias, acct}, {dictionary, acct_rfc4006}, {module, ?MODULE}]}].

run_acct_client(Port, Sessions, Interims) ->
    ok = diameter:start_service(?SVC, acct_service()),
    true = diameter:subscribe(?SVC),
    Transport = [{transport_module, diameter_tcp},
                 {transport_config, [{raddr, {127, 0, 0, 1}}, {rport, Port},
                                     {ip, {127, 0, 0, 1}}]},
                 {watchdog_timer, 6000},
                 {connect_timer, 30000}],
    {ok, Ref} = diameter:add_transport(?SVC, {connect, Transport}),
    Peer = wait_event(fun({up, R, _, _, _}) -> R == Ref; (_) -> false end, 10000, "peer up"),
    {up, Ref, {_, Caps}, _, _} = Peer,
    io:format("EVENT up peer=~s product=~s acct_apps=~w auth_apps=~w~n",
              [element(2, Caps#diameter_caps.origin_host),
               element(2, Caps#diameter_caps.product_name),
               element(2, Caps#diameter_caps.acct_application_id),
               element(2, Caps#diameter_caps.auth_application_id)]),
    Started = erlang:monotonic_time(millisecond),
    Parent = self(),
    Workers = [spawn_link(fun() -> Parent ! {self(), acct_session(S, Interims)} end)
               || S <- lists:seq(1, Sessions)],
    Results = [receive {W, R} -> R after 30000 -> {error, {session_timeout, W}} end
               || W <- Workers],
    Elapsed = erlang:monotonic_time(millisecond) - Started,
    case [E || {error, E} <- Results] of
        [] -> ok;
        Errors -> fail("accounting sessions failed: ~p", [Errors])
    end,
    Answers = lists:sum([N || {ok, N} <- Results]),
    io:format("EVENT batch acas=~b elapsed_ms=~b~n", [Answers, Elapsed]),
    %% Tw 6000 is jittered by OTP to 4-8 s: a DWR goes out after that much silence.
    Watchdog = wait_stats(fun(S) -> count(S, dwr_sent) >= 1 andalso count(S, dwa_recv) >= 1 end,
                          14000),
    print_stats(Watchdog),
    State = watchdog_state(),
    io:format("EVENT watchdog state=~p~n", [State]),
    ok = diameter:remove_transport(?SVC, Ref),
    wait_event(fun({down, R, _, _}) -> R == Ref;
                  ({watchdog, R, _, {_, down}, _}) -> R == Ref;
                  (_) -> false
               end, 8000, "peer down after DPR"),
    Final = stats(),
    print_stats(Final),
    (count(Final, dpa_recv) >= 1) orelse fail("no DPA counted after DPR: ~p", [Final]),
    ok = diameter:stop_service(?SVC),
    Status = case errors() of 0 -> ok; _ -> fail end,
    io:format("RESULT ~s sessions=~b acas=~b aca_2001=~b asr_recv=~b asa_2001=~b dwr_sent=~b "
              "dwa_recv=~b dwa_2001=~b dwr_recv=~b dpr_sent=~b dpa_recv=~b dpa_2001=~b "
              "watchdog=~p errors=~b~n",
              [Status, Sessions, Answers, count(Final, aca_recv_2001), counter(asr_recv),
               count(Final, asa_sent_2001), count(Final, dwr_sent), count(Final, dwa_recv),
               count(Final, dwa_recv_2001), count(Final, dwr_recv), count(Final, dpr_sent),
               count(Final, dpa_recv), count(Final, dpa_recv_2001), State, errors()]),
    halt(case Status of ok -> 0; fail -> 1 end).

%% One session: START, Interims x INTERIM, STOP, strictly in order; the number of ACAs.
acct_session(N, Interims) ->
    SessionId = iolist_to_binary(diameter:session_id(?ACCT_HOST)),
    Msisdn = list_to_binary(io_lib:format("4917000000~2..0b", [N])),
    Records = [{2, 0}] ++ [{3, I} || I <- lists:seq(1, Interims)] ++ [{4, Interims + 1}],
    try
        lists:foreach(fun({Type, Number}) -> accounting(SessionId, Msisdn, Type, Number) end,
                      Records),
        io:format("EVENT session n=~b msisdn=~s id=~s acas=~b~n",
                  [N, Msisdn, SessionId, length(Records)]),
        {ok, length(Records)}
    catch
        throw:Reason -> {error, Reason}
    end.

accounting(SessionId, Msisdn, Type, Number) ->
    Acr0 = #{'Session-Id' => SessionId,
             'Accounting-Record-Type' => Type,
             'Accounting-Record-Number' => Number,
             'Acct-Application-Id' => ?ACCT_APP,
             'Event-Timestamp' => calendar:universal_time()},
    %% DESIGN.md section 3: who and what on START, the usage since the previous record on
    %% INTERIM, the final usage and why on STOP.
    Acr = case Type of
              2 -> Acr0#{'Subscription-Id' => [#{'Subscription-Id-Type' => 0,
                                                 'Subscription-Id-Data' => Msisdn}],
                         'Rating-Group' => 1};
              3 -> Acr0#{'Used-Service-Unit' => #{'CC-Time' => 30}};
              4 -> Acr0#{'Used-Service-Unit' => #{'CC-Time' => 10},
                         'Termination-Cause' => 1}
          end,
    case diameter:call(?SVC, acct, ['ACR' | Acr], [{timeout, 5000}]) of
        {ok, ['ACA' | Aca]} ->
            check_aca(SessionId, Type, Number, Aca);
        {error, {errors, Errors, Msg}} ->
            error_count(),
            throw({aca_decode_errors, Type, Number, Errors, Msg});
        {error, {answer_message, Msg}} ->
            error_count(),
            throw({error_answer, Type, Number, Msg});
        Other ->
            error_count(),
            throw({call_failed, Type, Number, Other})
    end.

check_aca(SessionId, Type, Number, Aca) ->
    Expect = [{'Session-Id', SessionId}, {'Result-Code', 2001},
              {'Accounting-Record-Type', Type}, {'Accounting-Record-Number', Number}],
    Wrong = [{K, V, maps:get(K, Aca, missing)} || {K, V} <- Expect, maps:get(K, Aca, missing) /= V],
    %% An optional AVP ([ Acct-Application-Id ] in the ACA grammar): diameter's map format
    %% gives it as [Value].
    AppId = maps:get('Acct-Application-Id', Aca, missing),
    if
        Wrong /= [] ->
            error_count(),
            throw({wrong_aca, Type, Number, Wrong, Aca});
        AppId /= [?ACCT_APP] ->
            error_count(),
            throw({wrong_aca, Type, Number, [{'Acct-Application-Id', ?ACCT_APP, AppId}], Aca});
        true ->
            ok
    end.

%% ---------------------------------------------------------------------------------------
%% Server: our client connects to OTP.

run_server() ->
    ok = diameter:start_service(?SVC, service(?SERVER_HOST)),
    true = diameter:subscribe(?SVC),
    Transport = [{transport_module, diameter_tcp},
                 {transport_config, [{reuseaddr, true}, {ip, {127, 0, 0, 1}}, {port, 0}]}],
    {ok, Ref} = diameter:add_transport(?SVC, {listen, Transport}),
    io:format("LISTENING port=~b~n", [listening_port(Ref, 50)]),
    {up, _, {_, Caps}, _, _} =
        wait_event(fun({up, R, _, _, _}) -> R == Ref; (_) -> false end, 20000, "peer up"),
    io:format("EVENT up peer=~s product=~s~n",
              [element(2, Caps#diameter_caps.origin_host),
               element(2, Caps#diameter_caps.product_name)]),
    serve(Ref, 0, erlang:monotonic_time(millisecond) + 40000).

%% Prints each new DWR count until the peer has gone.
serve(Ref, DwrSeen, Deadline) ->
    receive
        #diameter_event{service = ?SVC, info = Info} ->
            print_event(Info),
            case Info of
                {down, Ref, _, _} -> served(Ref);
                {watchdog, Ref, _, {_, down}, _} -> served(Ref);
                _ -> serve(Ref, DwrSeen, Deadline)
            end
    after 100 ->
            Dwr = count(stats(), dwr_recv),
            Dwr > DwrSeen andalso io:format("DWR recv=~b~n", [Dwr]),
            erlang:monotonic_time(millisecond) < Deadline
                orelse fail("the peer did not disconnect in time", []),
            serve(Ref, max(Dwr, DwrSeen), Deadline)
    end.

served(_Ref) ->
    Final = stats(),
    print_stats(Final),
    Requests = counter(requests),
    Status = case {errors(), count(Final, dpr_recv)} of
                 {0, N} when N >= 1 -> ok;
                 _ -> fail
             end,
    io:format("RESULT ~s requests=~b dwr_recv=~b dwa_sent=~b dpr_recv=~b dpa_sent=~b "
              "errors=~b~n",
              [Status, Requests, count(Final, dwr_recv), count(Final, dwa_sent),
               count(Final, dpr_recv), count(Final, dpa_sent), errors()]),
    diameter:stop_service(?SVC),
    halt(case Status of ok -> 0; fail -> 1 end).

%% The port diameter_tcp's listening socket got (port 0: the kernel picked it).
listening_port(Ref, Tries) ->
    Found = [Port || {{diameter_tcp, listener, {R, {_, Socket}}}, _} <- diameter_reg:match(
                                                                       {diameter_tcp, listener, '_'}),
                     R == Ref,
                     {ok, Port} <- [inet:port(Socket)]],
    case {Found, Tries} of
        {[Port | _], _} -> Port;
        {[], 0} -> fail("no listening socket for ~p: ~p", [Ref, diameter:service_info(?SVC, transport)]);
        {[], _} -> timer:sleep(100), listening_port(Ref, Tries - 1)
    end.

%% ---------------------------------------------------------------------------------------
%% diameter_app callbacks

peer_up(_Svc, _Peer, State) -> State.

peer_down(_Svc, _Peer, State) -> State.

pick_peer([Peer | _], _, _Svc, _State) -> {ok, Peer};
pick_peer([], _, _Svc, _State) -> false.

%% Origin-* and Destination-Realm from the capabilities exchange.
prepare_request(#diameter_packet{msg = [Name | Avps]}, _Svc, {_, Caps}) ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, DR}} = Caps,
    {send, [Name | Avps#{'Origin-Host' => OH, 'Origin-Realm' => OR, 'Destination-Realm' => DR}]}.

prepare_retransmit(Packet, Svc, Peer) -> prepare_request(Packet, Svc, Peer).

handle_answer(#diameter_packet{msg = Msg, errors = []}, _Request, _Svc, _Peer) ->
    {ok, Msg};
handle_answer(#diameter_packet{msg = ['answer-message' | _] = Msg}, _Request, _Svc, _Peer) ->
    {error, {answer_message, Msg}};
handle_answer(#diameter_packet{msg = Msg, errors = Errors}, _Request, _Svc, _Peer) ->
    io:format("EVENT answer_errors errors=~0p msg=~0p~n", [Errors, Msg]),
    {error, {errors, Errors, Msg}}.

handle_error(Reason, _Request, _Svc, _Peer) -> {error, Reason}.

handle_request(#diameter_packet{msg = ['CCR' | Ccr], errors = []}, _Svc, {_, Caps}) ->
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, _}} = Caps,
    counter(requests, 1),
    Granted = [#{'Rating-Group' => maps:get('Rating-Group', M, 10),
                 'Granted-Service-Unit' => #{'CC-Total-Octets' => 1000000, 'CC-Time' => 600},
                 'Validity-Time' => 60,
                 'Result-Code' => 2001}
               || M <- maps:get('Multiple-Services-Credit-Control', Ccr, [])],
    Cca = #{'Session-Id' => maps:get('Session-Id', Ccr),
            'Result-Code' => 2001,
            'Origin-Host' => OH,
            'Origin-Realm' => OR,
            'Auth-Application-Id' => ?CC_APP,
            'CC-Request-Type' => maps:get('CC-Request-Type', Ccr),
            'CC-Request-Number' => maps:get('CC-Request-Number', Ccr),
            'Multiple-Services-Credit-Control' => Granted},
    {reply, ['CCA' | Cca]};
handle_request(#diameter_packet{msg = ['ASR' | Asr], errors = []}, _Svc, {_, Caps}) ->
    %% The gateway cut a session (DESIGN.md section 3): count it, say why, answer 2001.
    #diameter_caps{origin_host = {OH, _}, origin_realm = {OR, _}} = Caps,
    counter(asr_recv, 1),
    io:format("EVENT asr session=~s auth_app=~p cause=~p message=~p~n",
              [maps:get('Session-Id', Asr), maps:get('Auth-Application-Id', Asr, missing),
               maps:get('Termination-Cause', Asr, missing),
               maps:get('Error-Message', Asr, missing)]),
    {reply, ['ASA' | #{'Session-Id' => maps:get('Session-Id', Asr),
                       'Result-Code' => 2001,
                       'Origin-Host' => OH,
                       'Origin-Realm' => OR}]};
handle_request(#diameter_packet{msg = Msg, errors = Errors}, _Svc, _Peer) ->
    %% diameter answers a request it could not decode with the error's Result-Code.
    counter(requests, 1),
    error_count(),
    io:format("FAIL request_errors errors=~0p msg=~0p~n", [Errors, Msg]),
    case Errors of
        [{Code, _} | _] when is_integer(Code) -> {answer_message, Code};
        [Code | _] when is_integer(Code) -> {answer_message, Code};
        [] -> {answer_message, 3001}
    end.

%% ---------------------------------------------------------------------------------------
%% Events, statistics, counters

wait_event(Match, Timeout, What) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_event_until(Match, Deadline, What).

wait_event_until(Match, Deadline, What) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        #diameter_event{service = ?SVC, info = Info} ->
            print_event(Info),
            case Match(Info) of
                true -> Info;
                false -> wait_event_until(Match, Deadline, What)
            end
    after Left ->
            fail("timed out waiting for ~s (~p)", [What, diameter:service_info(?SVC, transport)])
    end.

print_event({up, _, {_, Caps}, _, _}) ->
    io:format("EVENT otp up remote=~s~n", [element(2, Caps#diameter_caps.origin_host)]);
print_event({down, _, {_, Caps}, _}) ->
    io:format("EVENT otp down remote=~s~n", [element(2, Caps#diameter_caps.origin_host)]);
print_event({watchdog, _, _, {From, To}, _}) ->
    io:format("EVENT otp watchdog ~p->~p~n", [From, To]);
print_event({closed, _, Reason, _}) ->
    %% A failed capabilities exchange: {'CER'|'CEA', Result, Caps, Packet} or a timeout.
    error_count(),
    io:format("FAIL closed reason=~0p~n", [Reason]);
print_event(Other) ->
    io:format("EVENT otp ~0p~n", [Other]).

wait_stats(Done, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_stats_until(Done, Deadline).

wait_stats_until(Done, Deadline) ->
    Stats = stats(),
    case Done(Stats) of
        true -> Stats;
        false ->
            erlang:monotonic_time(millisecond) < Deadline
                orelse fail("no DWR/DWA exchange in time: ~p", [Stats]),
            receive #diameter_event{service = ?SVC, info = Info} -> print_event(Info)
            after 100 -> ok
            end,
            wait_stats_until(Done, Deadline)
    end.

%% diameter's message counters, keyed {{AppId, CommandCode, RBit}, send|recv} and, for
%% answers, {{AppId, CommandCode, 0}, send|recv, {'Result-Code', Code}}. Read from a
%% trace of diameter_stats:incr rather than diameter:service_info(_, statistics), which
%% forgets a connection's counts once it is gone (and so the DPR/DPA of an orderly close).
start_stats() ->
    Tracer = spawn(fun() -> stats_loop(#{}) end),
    register(otp_interop_stats, Tracer),
    erlang:trace(all, true, [call, {tracer, Tracer}]),
    {module, _} = code:ensure_loaded(diameter_stats),
    1 = erlang:trace_pattern({diameter_stats, incr, 1}, true, [global]),
    1 = erlang:trace_pattern({diameter_stats, incr, 3}, true, [global]).

stats_loop(Stats) ->
    receive
        {trace, _, call, {diameter_stats, incr, [Counter | Rest]}} ->
            N = case Rest of [_, Incr] -> Incr; [] -> 1 end,
            stats_loop(case Counter of
                           {{_, _, _}, Dir} when Dir == send; Dir == recv ->
                               maps:update_with(Counter, fun(V) -> V + N end, N, Stats);
                           {{_, _, _}, Dir, {'Result-Code', _}} when Dir == send; Dir == recv ->
                               maps:update_with(Counter, fun(V) -> V + N end, N, Stats);
                           _ ->
                               Stats
                       end);
        {get, From} ->
            From ! {stats, Stats},
            stats_loop(Stats);
        _ ->
            stats_loop(Stats)
    end.

stats() ->
    otp_interop_stats ! {get, self()},
    receive {stats, Stats} -> Stats after 5000 -> fail("statistics tracer stuck", []) end.

count(Stats, dwr_sent) -> maps:get({{0, 280, 1}, send}, Stats, 0);
count(Stats, dwr_recv) -> maps:get({{0, 280, 1}, recv}, Stats, 0);
count(Stats, dwa_sent) -> maps:get({{0, 280, 0}, send}, Stats, 0);
count(Stats, dwa_recv) -> maps:get({{0, 280, 0}, recv}, Stats, 0);
count(Stats, dpr_sent) -> maps:get({{0, 282, 1}, send}, Stats, 0);
count(Stats, dpr_recv) -> maps:get({{0, 282, 1}, recv}, Stats, 0);
count(Stats, dpa_sent) -> maps:get({{0, 282, 0}, send}, Stats, 0);
count(Stats, dpa_recv) -> maps:get({{0, 282, 0}, recv}, Stats, 0);
count(Stats, dwa_recv_2001) -> maps:get({{0, 280, 0}, recv, {'Result-Code', 2001}}, Stats, 0);
count(Stats, dpa_recv_2001) -> maps:get({{0, 282, 0}, recv, {'Result-Code', 2001}}, Stats, 0);
count(Stats, aca_recv_2001) -> maps:get({{3, 271, 0}, recv, {'Result-Code', 2001}}, Stats, 0);
count(Stats, asa_sent_2001) -> maps:get({{3, 274, 0}, send, {'Result-Code', 2001}}, Stats, 0);
count(Stats, cca_recv_2001) -> maps:get({{4, 272, 0}, recv, {'Result-Code', 2001}}, Stats, 0).

print_stats(Stats) ->
    io:format("STATS ~s~n", [lists:join(" ", [stat(K, N) || {K, N} <- lists:sort(maps:to_list(Stats))])]).

stat({{A, C, R}, D}, N) -> io_lib:format("~b/~b/~b/~s=~b", [A, C, R, D, N]);
stat({{A, C, R}, D, {'Result-Code', RC}}, N) -> io_lib:format("~b/~b/~b/~s/~b=~b", [A, C, R, D, RC, N]).

watchdog_state() ->
    States = [S || Info <- diameter:service_info(?SVC, connections),
                   {watchdog, {_, _, S}} <- Info],
    case States of
        [State | _] -> State;
        [] -> unknown
    end.

counter(Name) ->
    case ets:lookup(?TABLE, Name) of
        [{_, N}] -> N;
        [] -> 0
    end.

counter(Name, Incr) -> ets:update_counter(?TABLE, Name, Incr, {Name, 0}).

error_count() -> counter(errors, 1).

errors() -> counter(errors).

fail(Format, Args) -> fail(self(), Format, Args).

fail(_Pid, Format, Args) ->
    io:format("FAIL " ++ Format ++ "~n", Args),
    halt(1).
