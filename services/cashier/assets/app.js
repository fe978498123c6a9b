// Paywire pages: one small script, no framework. Ids stay strings end to end (snowflake
// ids exceed 2^53); money is integer fen, formatted without floating point.
'use strict';

(function () {
  var TOKEN_KEY = 'paywire.token';
  var USER_KEY = 'paywire.user';
  var POLL_MS = 1500;

  function $(testid) { return document.querySelector('[data-testid="' + testid + '"]'); }
  function show(el, on) { if (el) { el.hidden = !on; } }
  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') : '';
  }
  function text(el, value) { if (el) { el.textContent = value; } }
  function notice(el, message, kind) {
    if (!el) { return; }
    el.textContent = message;
    el.className = 'notice' + (kind ? ' ' + kind : '');
    el.hidden = !message;
  }

  // ---------------------------------------------------------------- formatting

  /** Integer fen → "12.34" (no floats: 0.1 + 0.2 never reaches a price). */
  function yuan(fen) {
    var f = typeof fen === 'number' ? fen : Number(fen);
    if (!Number.isSafeInteger(f) || f < 0) { return '?'; }
    return String(Math.floor(f / 100)) + '.' + String(f % 100).padStart(2, '0');
  }
  function price(fen) { return '¥' + yuan(fen); }
  function date(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleDateString();
  }
  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    return String(Math.floor(s / 60)).padStart(2, '0') + ':' + String(s % 60).padStart(2, '0');
  }
  var LEARN = {
    can_learn: 'Can learn · 可学习',
    not_chosen_or_unpaid: 'Not paid · 未支付',
    expired: 'Expired · 已过期',
    refunded: 'Refunded · 已退款'
  };
  var CHANNEL = { wechat: 'WeChat Pay · 微信支付', alipay: 'Alipay · 支付宝', wechat_v2: 'WeChat Pay (API v2) · 微信支付' };

  // ---------------------------------------------------------------- session and API

  function token() { return localStorage.getItem(TOKEN_KEY); }
  function signOut() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  }
  function toLogin() {
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }

  /** Calls a same-origin API; answers {status, data} and never throws on HTTP errors. */
  function api(method, path, body) {
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; }
    var t = token();
    if (t) { headers['Authorization'] = 'Bearer ' + t; }
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store'
    }).then(function (resp) {
      return resp.text().then(function (raw) {
        var data = null;
        if (raw) {
          try { data = JSON.parse(raw); } catch (e) { data = { error: 'not_json', message: raw }; }
        }
        return { status: resp.status, data: data };
      });
    }, function (err) {
      return { status: 0, data: { error: 'network', message: String(err) } };
    });
  }
  function message(answer) {
    var d = answer.data || {};
    return (d.message || d.error || ('HTTP ' + answer.status));
  }

  function header() {
    var user = localStorage.getItem(USER_KEY);
    var who = $('current-user');
    if (user && token()) {
      text(who, user);
      show(who, true);
      show($('nav-login'), false);
      show($('sign-out'), true);
    }
    var out = $('sign-out');
    if (out) {
      out.addEventListener('click', function () { signOut(); location.href = '/login'; });
    }
  }

  // ---------------------------------------------------------------- catalogue

  function catalogue() {
    var list = $('course-list');
    var msg = $('catalogue-message');
    api('GET', '/api/learning/courses').then(function (a) {
      if (a.status !== 200 || !Array.isArray(a.data)) {
        notice(msg, 'Could not load the courses: ' + message(a), 'error');
        return;
      }
      a.data.forEach(function (course) { list.appendChild(courseCard(course, msg)); });
    });
  }

  function courseCard(course, msg) {
    var li = document.createElement('li');
    li.className = 'card';
    li.setAttribute('data-testid', 'course-card');
    li.setAttribute('data-course-id', course.id);
    li.setAttribute('data-charge', course.charge);
    var h = document.createElement('h3');
    h.setAttribute('data-testid', 'course-name');
    h.textContent = course.name;
    var p = document.createElement('p');
    p.className = 'price' + (course.charge === 'free' ? ' free' : '');
    p.setAttribute('data-testid', 'course-price');
    p.textContent = course.charge === 'free' ? 'Free · 免费' : price(course.price_fen);
    var days = document.createElement('p');
    days.className = 'muted';
    days.textContent = course.valid_days + ' days · 天';
    var btn = document.createElement('button');
    btn.type = 'button';
    btn.setAttribute('data-testid', 'choose-button');
    btn.textContent = course.charge === 'free' ? 'Enrol · 免费选课' : 'Buy · 购买';
    var result = document.createElement('p');
    result.setAttribute('data-testid', 'choose-result');
    result.hidden = true;
    btn.addEventListener('click', function () { choose(course, btn, result, msg); });
    li.append(h, p, days, btn, result);
    return li;
  }

  function choose(course, btn, result, msg) {
    if (!token()) { toLogin(); return; }
    btn.disabled = true;
    notice(msg, '');
    api('POST', '/api/learning/choose-course', { course_id: course.id }).then(function (a) {
      if (a.status === 401) { signOut(); toLogin(); return null; }
      if (a.status !== 200) { throw a; }
      var choice = a.data;
      if (choice.status === 'chosen') {
        notice(result, choice.learn_status === 'can_learn'
          ? 'Enrolled — start learning · 已开通，开始学习'
          : 'Already chosen · 已选', 'ok');
        result.setAttribute('data-state', choice.learn_status);
        btn.disabled = false;
        return null;
      }
      return api('POST', '/api/orders', { biz_type: 'course', biz_id: choice.choose_course_id })
        .then(function (o) {
          if (o.status !== 200 && o.status !== 201) { throw o; }
          location.href = '/checkout?order_id=' + encodeURIComponent(o.data.order_id) +
            '&course_id=' + encodeURIComponent(course.id);
        });
    }).catch(function (a) {
      btn.disabled = false;
      notice(result, 'Could not choose the course: ' + message(a), 'error');
    });
  }

  // ---------------------------------------------------------------- checkout

  function checkout() {
    var params = new URLSearchParams(location.search);
    var orderId = params.get('order_id');
    var courseId = params.get('course_id');
    var err = $('checkout-error');
    if (!orderId) { notice(err, 'No order given. 缺少订单号。', 'error'); return; }
    if (!token()) { toLogin(); return; }

    var state = { order: null, payment: null, done: false, timer: null, tick: null, expiresAt: null };
    var status = $('pay-status');
    function setStatus(name, label) {
      status.setAttribute('data-state', name);
      status.textContent = label;
    }
    function stop() {
      state.done = true;
      clearInterval(state.timer);
      clearInterval(state.tick);
    }

    function renderOrder(order) {
      state.order = order;
      text($('order-description'), order.description);
      text($('order-price'), price(order.total_fen));
      text($('order-id'), order.order_id);
      show($('order-panel'), true);
      if (order.expires_at) { state.expiresAt = new Date(order.expires_at); }
    }

    /** A final state: polling stops and only its panel stays on screen. */
    function finish(name, label, panel) {
      stop();
      setStatus(name, label);
      show($('channel-choice'), false);
      show($('qr-panel'), false);
      show($(panel), true);
    }

    function closed() {
      finish('closed', 'Order closed · 订单已关闭', 'closed-message');
    }

    function success() {
      finish('paid', 'Paid — start learning · 支付成功，开始学习', 'success');
    }

    /** Paid order: success once the enrolment exists (the learning center consumes the
     * pay result asynchronously, a moment after the order service). */
    function confirmEnrolment() {
      setStatus('confirming', 'Payment received, opening the course… 已支付，正在开通课程');
      show($('channel-choice'), false);
      if (!courseId) { success(); return Promise.resolve(); }
      return api('GET', '/api/learning/learn-status/' + encodeURIComponent(courseId)).then(function (a) {
        if (a.status === 200 && a.data.learn_status === 'can_learn') { success(); }
      });
    }

    function apply(order) {
      if (state.done) { return Promise.resolve(); }
      renderOrder(order);
      if (order.status === 'closed') { closed(); return Promise.resolve(); }
      if (order.status === 'paid') { return confirmEnrolment(); }
      if (!state.payment) {
        setStatus('choose_channel', 'Choose how to pay · 请选择支付方式');
        show($('channel-choice'), true);
      }
      return Promise.resolve();
    }

    function poll() {
      if (state.done) { return; }
      api('GET', '/api/orders/' + encodeURIComponent(orderId)).then(function (a) {
        if (a.status === 401) { signOut(); toLogin(); return; }
        if (a.status === 200) { apply(a.data); }
      });
    }

    function countdown() {
      var el = $('countdown');
      if (!state.expiresAt) { text(el, ''); return; }
      var left = state.expiresAt.getTime() - Date.now();
      if (left > 0) {
        text(el, 'Time left · 剩余支付时间 ' + clock(left));
        el.setAttribute('data-expired', 'false');
      } else {
        text(el, 'Payment time is up · 支付已超时');
        el.setAttribute('data-expired', 'true');
      }
    }

    function pay(channel) {
      var buttons = document.querySelectorAll('[data-channel]');
      buttons.forEach(function (b) { b.disabled = true; });
      notice(err, '');
      api('POST', '/api/orders/' + encodeURIComponent(orderId) + '/pay', { channel: channel }).then(function (a) {
        buttons.forEach(function (b) { b.disabled = false; });
        if (a.status === 401) { signOut(); toLogin(); return; }
        if (a.status !== 200) {
          var code = (a.data || {}).error;
          if (code === 'order_closed') { closed(); return; }
          if (code === 'order_already_paid') { poll(); return; }
          notice(err, (CHANNEL[channel] || channel) + ': ' + message(a), 'error');
          return;
        }
        showPayment(a.data);
      });
    }

    function showPayment(p) {
      state.payment = p;
      if (!state.order || !state.order.expires_at) { state.expiresAt = new Date(p.expires_at); }
      text($('qr-channel'), CHANNEL[p.channel] || p.channel);
      var box = $('qr-code');
      box.textContent = '';
      box.setAttribute('data-channel', p.channel);
      if (p.code_url) {
        // Rendered here, not on the server (seed 000: the client draws payment QR codes).
        var qr = window.qrcode(0, 'M');
        qr.addData(p.code_url);
        qr.make();
        var img = document.createElement('img');
        img.src = qr.createDataURL(6, 2);
        img.alt = 'QR code for ' + p.channel;
        img.setAttribute('data-testid', 'qr-image');
        box.appendChild(img);
      }
      $('code-url').value = p.code_url || '';
      var wallet = meta('paywire-wallet-url');
      var link = $('wallet-link');
      if (wallet) { link.href = wallet; show(link, true); }
      show($('qr-panel'), true);
      setStatus('waiting', 'Waiting for payment · 等待支付');
      countdown();
    }

    function checkPaid() {
      var btn = $('paid-button');
      var out = $('pay-result-message');
      btn.disabled = true;
      notice(out, 'Checking with the payment channel… 正在查询');
      api('GET', '/api/orders/' + encodeURIComponent(orderId) + '/pay-result').then(function (a) {
        btn.disabled = false;
        if (a.status === 200) {
          if (a.data.paid || a.data.status === 'paid') {
            notice(out, 'Payment found · 已查到支付', 'ok');
            poll();
          } else if (a.data.status === 'closed') {
            closed();
          } else {
            notice(out, 'No payment yet — finish paying in the wallet, then try again. 尚未查到支付。');
          }
        } else if (a.status === 503 || a.status === 502 || a.status === 504) {
          notice(out, 'The payment channel cannot be reached right now; try again in a moment. 支付渠道暂不可用，请稍后重试。', 'error');
        } else if (a.status === 404) {
          notice(out, 'This check is not available; the status above updates by itself. 状态会自动刷新。');
        } else if (a.status === 401) {
          signOut(); toLogin();
        } else {
          notice(out, message(a), 'error');
        }
      });
    }

    document.querySelectorAll('[data-channel]').forEach(function (b) {
      b.addEventListener('click', function () { pay(b.getAttribute('data-channel')); });
    });
    $('paid-button').addEventListener('click', checkPaid);

    api('GET', '/api/orders/' + encodeURIComponent(orderId)).then(function (a) {
      if (a.status === 401) { signOut(); toLogin(); return; }
      if (a.status !== 200) {
        notice(err, 'Could not load the order: ' + message(a), 'error');
        return;
      }
      apply(a.data);
      state.timer = setInterval(poll, POLL_MS);
      state.tick = setInterval(countdown, 1000);
    });
  }

  // ---------------------------------------------------------------- my courses

  function myCourses() {
    if (!token()) { toLogin(); return; }
    var msg = $('my-courses-message');
    api('GET', '/api/learning/my-courses').then(function (a) {
      if (a.status === 401) { signOut(); toLogin(); return; }
      if (a.status !== 200) { notice(msg, 'Could not load your courses: ' + message(a), 'error'); return; }
      var body = $('my-courses-body');
      a.data.courses.forEach(function (c) {
        var tr = document.createElement('tr');
        tr.setAttribute('data-testid', 'my-course-row');
        tr.setAttribute('data-course-id', c.course_id);
        var name = document.createElement('td');
        name.setAttribute('data-testid', 'my-course-name');
        name.textContent = c.course_name;
        var st = document.createElement('td');
        var badge = document.createElement('span');
        badge.className = 'badge ' + c.learn_status;
        badge.setAttribute('data-testid', 'my-course-status');
        badge.setAttribute('data-state', c.learn_status);
        badge.textContent = LEARN[c.learn_status] || c.learn_status;
        st.appendChild(badge);
        var valid = document.createElement('td');
        valid.setAttribute('data-testid', 'my-course-valid');
        // A refunded course says when it was refunded; the catalogue sells it again.
        valid.textContent = c.refunded_at
          ? 'Refunded · 已退款 ' + date(c.refunded_at)
          : date(c.valid_from) + ' – ' + date(c.valid_until);
        tr.append(name, st, valid);
        body.appendChild(tr);
      });
      show($('my-courses-empty'), a.data.courses.length === 0);
      var pending = a.data.awaiting_payment || [];
      show($('awaiting-title'), pending.length > 0);
      var list = $('awaiting-list');
      pending.forEach(function (p) {
        var li = document.createElement('li');
        li.setAttribute('data-testid', 'awaiting-row');
        li.textContent = p.course_name + ' — ' + price(p.price_fen);
        list.appendChild(li);
      });
    });
  }

  // ---------------------------------------------------------------- sign-in

  function login() {
    var form = $('login-form');
    var err = $('login-error');
    if (meta('paywire-dev-login') !== 'true') {
      show($('login-disabled'), true);
      show(form, false);
      return;
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var userId = $('login-user-id').value.trim();
      api('POST', '/dev/login', { user_id: userId }).then(function (a) {
        if (a.status !== 200) { notice(err, 'Sign-in failed: ' + message(a), 'error'); return; }
        localStorage.setItem(TOKEN_KEY, a.data.token);
        localStorage.setItem(USER_KEY, a.data.user_id);
        var next = new URLSearchParams(location.search).get('next');
        // Only same-site paths: never an open redirect.
        location.href = next && next.charAt(0) === '/' && next.charAt(1) !== '/' ? next : '/';
      });
    });
  }

  var PAGES = { catalogue: catalogue, checkout: checkout, 'my-courses': myCourses, login: login };

  document.addEventListener('DOMContentLoaded', function () {
    header();
    var page = document.querySelector('[data-page]');
    var run = page && PAGES[page.getAttribute('data-page')];
    if (run) { run(); }
  });

  // Exposed for tests of the formatting rules.
  window.paywire = { yuan: yuan };
})();
